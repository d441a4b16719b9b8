//! What the simulator puts on the wire: Alibaba Cloud error codes, their messages and HTTP statuses,
//! the JSON shapes of errors and successes, and the request ids.

use serde::Serialize;

/// Error codes, spelled as Alibaba Cloud spells them.
pub mod codes {
    pub const SIGNATURE_DOES_NOT_MATCH: &str = "SignatureDoesNotMatch";
    pub const INCOMPLETE_SIGNATURE: &str = "IncompleteSignature";
    pub const INVALID_ACCESS_KEY_ID_NOT_FOUND: &str = "InvalidAccessKeyId.NotFound";
    pub const INVALID_TIMESTAMP_FORMAT: &str = "InvalidTimeStamp.Format";
    pub const INVALID_TIMESTAMP_EXPIRED: &str = "InvalidTimeStamp.Expired";
    pub const SIGNATURE_NONCE_USED: &str = "SignatureNonceUsed";
    pub const INVALID_TASK_NOT_FOUND: &str = "InvalidTask.NotFound";
    pub const INVALID_SECURITY_TOKEN_EXPIRED: &str = "InvalidSecurityToken.Expired";
    pub const INVALID_SECURITY_TOKEN_MALFORMED: &str = "InvalidSecurityToken.Malformed";
    pub const INVALID_SECURITY_TOKEN_MISMATCH: &str = "InvalidSecurityToken.MismatchWithAccessKey";
    pub const MISSING_SECURITY_TOKEN: &str = "MissingSecurityToken";
    pub const THROTTLING_USER: &str = "Throttling.User";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
    pub const INVALID_ACTION_NOT_FOUND: &str = "InvalidAction.NotFound";
    pub const INVALID_VERSION: &str = "InvalidVersion";
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    pub const UNSUPPORTED_HTTP_METHOD: &str = "UnsupportedHTTPMethod";
    pub const ENTITY_NOT_EXIST_ROLE: &str = "EntityNotExist.Role";
    pub const ENTITY_NOT_EXIST_OIDC_PROVIDER: &str = "EntityNotExist.OIDCProvider";
    pub const INVALID_DURATION_SECONDS: &str = "InvalidParameter.DurationSeconds";
    pub const INVALID_ROLE_SESSION_NAME: &str = "InvalidParameter.RoleSessionName";
    /// The Live MPU operations' codes (their documented error tables): a parameter that fails
    /// a check, one that is absent, and a quota. Alibaba documents no distinct code for "the
    /// channel does not exist" or "task already exists"; both come as `InvalidParam` with that
    /// message.
    pub const INVALID_PARAM: &str = "InvalidParam";
    pub const MISSING_PARAM: &str = "MissingParam";
    pub const FORBIDDEN: &str = "Forbidden";
}

/// Messages for the codes above (Alibaba's wording where known).
pub mod messages {
    pub const SIGNATURE_DOES_NOT_MATCH: &str =
        "Specified signature is not matched with our calculation. server string to sign is:";
    pub const INVALID_ACCESS_KEY_ID_NOT_FOUND: &str = "Specified access key is not found.";
    pub const INVALID_TIMESTAMP_FORMAT: &str =
        "Specified time stamp or date value is not well formatted.";
    pub const INVALID_TIMESTAMP_EXPIRED: &str = "Specified time stamp or date value is expired.";
    pub const SIGNATURE_NONCE_USED: &str = "Specified signature nonce was used already.";
    pub const INVALID_TASK_NOT_FOUND: &str = "The specified task does not exist.";
    pub const INVALID_SECURITY_TOKEN_EXPIRED: &str = "Specified SecurityToken is expired.";
    pub const INVALID_SECURITY_TOKEN_MALFORMED: &str = "Specified SecurityToken is malformed.";
    pub const INVALID_SECURITY_TOKEN_MISMATCH: &str =
        "Specified SecurityToken mismatch with the AccessKey.";
    pub const THROTTLING_USER: &str = "Request was denied due to user flow control.";
    pub const INTERNAL_ERROR: &str =
        "The request processing has failed due to some unknown error, exception or failure.";
    pub const SERVICE_UNAVAILABLE: &str =
        "The request has failed due to a temporary failure of the server.";
    pub const INVALID_ACTION_NOT_FOUND: &str =
        "Specified api is not found, please check your url and method.";
    pub const INVALID_VERSION: &str = "Specified parameter Version is not valid.";
    pub const UNSUPPORTED_HTTP_METHOD: &str = "This http method is not supported.";
    pub const ENTITY_NOT_EXIST_ROLE: &str = "The specified Role not exists .";
    pub const ENTITY_NOT_EXIST_OIDC_PROVIDER: &str = "The specified OIDC provider not exists.";
    pub const INVALID_DURATION_SECONDS: &str = "The parameter DurationSeconds is invalid.";
    pub const INVALID_ROLE_SESSION_NAME: &str = "The parameter RoleSessionName is invalid.";
}

/// Header carrying the request id on every answer, as Alibaba's gateways do.
pub const HEADER_REQUEST_ID: &str = "x-acs-request-id";
pub const CONTENT_TYPE_JSON: &str = "application/json;charset=utf-8";
/// GetMPUTaskStatus versions: ApsaraVideo Live (documented) and RTC (today's SDKs).
pub const VERSION_LIVE: &str = "2016-11-01";
pub const VERSION_RTC: &str = "2018-01-11";
pub const HOST_LIVE: &str = "live.aliyuncs.com";
pub const HOST_RTC: &str = "rtc.aliyuncs.com";
pub const HOST_STS: &str = "sts.aliyuncs.com";
pub const ACTION_ASSUME_ROLE_WITH_OIDC: &str = "AssumeRoleWithOIDC";
pub const ACTION_GET_CALLER_IDENTITY: &str = "GetCallerIdentity";
pub const VERSION_STS: &str = "2015-04-01";
/// `IdentityType` values of GetCallerIdentity.
pub const IDENTITY_RAM_USER: &str = "RAMUser";
pub const IDENTITY_ASSUMED_ROLE_USER: &str = "AssumedRoleUser";
const RECOMMEND_BASE: &str = "https://api.aliyun.com/troubleshoot";

/// The cloud API actions the simulator serves, named as Alibaba names them (`Action=`), e.g. to
/// say which calls a fault applies to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Action {
    #[serde(rename = "GetMPUTaskStatus")]
    GetMpuTaskStatus,
    #[serde(rename = "AssumeRoleWithOIDC")]
    AssumeRoleWithOidc,
    #[serde(rename = "GetCallerIdentity")]
    GetCallerIdentity,
    #[serde(rename = "StartLiveMPUTask")]
    StartLiveMpuTask,
    #[serde(rename = "UpdateLiveMPUTask")]
    UpdateLiveMpuTask,
    #[serde(rename = "StopLiveMPUTask")]
    StopLiveMpuTask,
    #[serde(rename = "ListRtcMPUTaskDetail")]
    ListRtcMpuTaskDetail,
    #[serde(rename = "CreateRtcMPUEventSub")]
    CreateRtcMpuEventSub,
    #[serde(rename = "UpdateRtcMPUEventSub")]
    UpdateRtcMpuEventSub,
    #[serde(rename = "DescribeRtcMPUEventSub")]
    DescribeRtcMpuEventSub,
    #[serde(rename = "DeleteRtcMPUEventSub")]
    DeleteRtcMpuEventSub,
    #[serde(rename = "ListRtcMPUEventSubRecord")]
    ListRtcMpuEventSubRecord,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::GetMpuTaskStatus,
        Action::AssumeRoleWithOidc,
        Action::GetCallerIdentity,
        Action::StartLiveMpuTask,
        Action::UpdateLiveMpuTask,
        Action::StopLiveMpuTask,
        Action::ListRtcMpuTaskDetail,
        Action::CreateRtcMpuEventSub,
        Action::UpdateRtcMpuEventSub,
        Action::DescribeRtcMpuEventSub,
        Action::DeleteRtcMpuEventSub,
        Action::ListRtcMpuEventSubRecord,
    ];
    /// The STS actions.
    pub const STS: [Action; 2] = [Action::AssumeRoleWithOidc, Action::GetCallerIdentity];
    /// The actions on managed relays (Live 2016-11-01), each with its own rate limit.
    pub const RELAY: [Action; 4] = [
        Action::StartLiveMpuTask,
        Action::UpdateLiveMpuTask,
        Action::StopLiveMpuTask,
        Action::ListRtcMpuTaskDetail,
    ];

    /// Alibaba's documented calls per second per account of a relay or event action: 500 for
    /// Start, Update and Stop, 50 for ListRtcMPUTaskDetail and the four subscription
    /// operations, 100 for ListRtcMPUEventSubRecord; `None` for the others (GetMPUTaskStatus
    /// uses the uid's configured QPS, STS is not limited here).
    pub fn default_qps(self) -> Option<u32> {
        match self {
            Action::StartLiveMpuTask | Action::UpdateLiveMpuTask | Action::StopLiveMpuTask => {
                Some(500)
            }
            Action::ListRtcMpuTaskDetail
            | Action::CreateRtcMpuEventSub
            | Action::UpdateRtcMpuEventSub
            | Action::DescribeRtcMpuEventSub
            | Action::DeleteRtcMpuEventSub => Some(50),
            Action::ListRtcMpuEventSubRecord => Some(100),
            Action::GetMpuTaskStatus | Action::AssumeRoleWithOidc | Action::GetCallerIdentity => {
                None
            }
        }
    }

    /// The `Action=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::GetMpuTaskStatus => mpu_relay_sign::ACTION_GET_MPU_TASK_STATUS,
            Action::AssumeRoleWithOidc => ACTION_ASSUME_ROLE_WITH_OIDC,
            Action::GetCallerIdentity => ACTION_GET_CALLER_IDENTITY,
            Action::StartLiveMpuTask => "StartLiveMPUTask",
            Action::UpdateLiveMpuTask => "UpdateLiveMPUTask",
            Action::StopLiveMpuTask => "StopLiveMPUTask",
            Action::ListRtcMpuTaskDetail => "ListRtcMPUTaskDetail",
            Action::CreateRtcMpuEventSub => "CreateRtcMPUEventSub",
            Action::UpdateRtcMpuEventSub => "UpdateRtcMPUEventSub",
            Action::DescribeRtcMpuEventSub => "DescribeRtcMPUEventSub",
            Action::DeleteRtcMpuEventSub => "DeleteRtcMPUEventSub",
            Action::ListRtcMpuEventSubRecord => "ListRtcMPUEventSubRecord",
        }
    }

    /// The action an `Action=` value names, if the simulator serves it.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn is_sts(self) -> bool {
        Action::STS.contains(&self)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: HTTP status, code and message. The request id and host are added when rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// `Missing<Name>` / `<Name> is mandatory for this action.`, Alibaba's pattern for an absent
    /// required parameter.
    pub fn missing(name: &str) -> Self {
        Self {
            status: 400,
            code: format!("Missing{name}"),
            message: format!("{name} is mandatory for this action."),
        }
    }

    pub fn invalid_parameter(detail: impl std::fmt::Display) -> Self {
        Self::new(
            400,
            codes::INVALID_PARAMETER,
            format!("The specified parameter is not valid. {detail}"),
        )
    }

    pub fn signature_mismatch(server_string_to_sign: &str) -> Self {
        // The old SDK splits the message on ':' to compare string-to-signs; keep exactly one
        // "is:" followed by ours.
        Self::new(
            400,
            codes::SIGNATURE_DOES_NOT_MATCH,
            format!(
                "{}{server_string_to_sign}",
                messages::SIGNATURE_DOES_NOT_MATCH
            ),
        )
    }

    pub fn throttled() -> Self {
        Self::new(400, codes::THROTTLING_USER, messages::THROTTLING_USER)
    }

    pub fn is_throttling(&self) -> bool {
        self.code.starts_with("Throttling")
    }
}

/// The error body, field order as Alibaba sends it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody<'a> {
    pub request_id: &'a str,
    pub host_id: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub recommend: String,
}

impl<'a> ErrorBody<'a> {
    pub fn new(error: &'a ApiError, request_id: &'a str, host_id: &'a str) -> Self {
        let product = host_id.split('.').next().unwrap_or_default();
        Self {
            request_id,
            host_id,
            code: &error.code,
            message: &error.message,
            recommend: format!(
                "{RECOMMEND_BASE}?q={}&product={product}&requestId={request_id}",
                error.code
            ),
        }
    }
}

/// GetMPUTaskStatus' success body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusBody<'a> {
    pub request_id: &'a str,
    pub status: i64,
}

/// The endpoint host an API version belongs to, for `HostId`.
pub fn host_for_version(version: Option<&str>) -> &'static str {
    match version {
        Some(VERSION_RTC) => HOST_RTC,
        Some(VERSION_STS) => HOST_STS,
        _ => HOST_LIVE,
    }
}

/// A small, fast, deterministic-per-seed generator for request ids and STS credentials. Not
/// cryptographic: the simulator's credentials protect nothing.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// SplitMix64.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An uppercase UUID-shaped id, as Alibaba's RequestIds look.
    pub fn request_id(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }

    /// `len` characters from `alphabet`.
    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| {
                let index = (self.next_u64() % alphabet.len().max(1) as u64) as usize;
                char::from(alphabet.get(index).copied().unwrap_or(b'x'))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_through_serde_and_from_name() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
            assert_eq!(Action::from_name(action.as_str()), Some(action));
        }
        assert_eq!(Action::from_name("DescribeRegions"), None);
        assert!(Action::GetCallerIdentity.is_sts() && !Action::GetMpuTaskStatus.is_sts());
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let mut ids = IdGenerator::new(7);
        let a = ids.request_id();
        let b = ids.request_id();
        assert_ne!(a, b);
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
    }

    #[test]
    fn signature_mismatch_message_ends_with_server_string_after_a_colon() {
        let error = ApiError::signature_mismatch("GET&%2F&A%3DB");
        let (_, tail) = error.message.rsplit_once(':').unwrap();
        assert_eq!(tail, "GET&%2F&A%3DB");
    }

    #[test]
    fn error_body_has_alibaba_fields_in_order() {
        let error = ApiError::throttled();
        let json = serde_json::to_string(&ErrorBody::new(&error, "ID", HOST_LIVE)).unwrap();
        assert!(
            json.starts_with(
                r#"{"RequestId":"ID","HostId":"live.aliyuncs.com","Code":"Throttling.User","#
            ),
            "{json}"
        );
        assert!(json.contains(r#""Recommend":"https://api.aliyun.com/troubleshoot?q=Throttling.User&product=live&requestId=ID""#));
    }
}
