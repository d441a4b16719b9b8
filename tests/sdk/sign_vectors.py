#!/usr/bin/env python3
"""Signature vectors from Alibaba Cloud's official Python SDKs, for tests/sdk_signatures.rs.

Reads one JSON object (or a JSON list of them) on stdin and prints the SDKs' answers as JSON on stdout.
Every signature printed here is computed by the SDKs' own code; this script only feeds them fixed inputs. Where
an SDK reads the clock or draws a nonce itself, that one function is replaced by one returning the given value,
and where it would send a request, the transport is replaced by one that records the request.

Modes ("mode"):
  v1_raw      {method, secret, params}: the old core SDK's string to sign and signature for a full parameter map,
              plus the signature of the new runtime's own V1 function (Utils.get_rpcsignature).
  v1_request  {method, access_key_id, secret, security_token?, region_id, nonce, timestamp, version, action,
              params}: the old core SDK signs an RpcRequest as AcsClient would (Format=JSON); prints the URL's
              query parameters and the string to sign.
  v3_request  {host, access_key_id, secret, security_token?, nonce, timestamp, app_id, task_id}: today's generated
              RTC client (GetMPUTaskStatus, ACS3-HMAC-SHA256) builds and signs the request; prints method, path,
              query and every header it would send, and the canonical request rebuilt from the runtime's own
              canonicalisation functions.
  v3_raw      {method, path, query, headers, payload_sha256, access_key_id, secret}: the runtime's
              canonical request and Authorization for headers we chose.
"""

import json
import sys
from urllib.parse import parse_qsl, urlsplit

SIGN_TYPE = "ACS3-HMAC-SHA256"


def v1_raw(inp):
    from aliyunsdkcore.auth.composer import rpc_signature_composer as composer
    from alibabacloud_tea_openapi.utils import Utils as TeaUtils

    # Module-level functions with a double underscore are private by convention only; getattr reaches them.
    compose = getattr(composer, "__compose_string_to_sign")
    get_signature = getattr(composer, "__get_signature")
    params = dict(inp["params"])
    string_to_sign = compose(inp["method"], params)
    return {
        "string_to_sign": string_to_sign,
        "signature": get_signature(string_to_sign, inp["secret"]),
        "signature_tea": TeaUtils.get_rpcsignature(params, inp["method"], inp["secret"]),
    }


def v1_request(inp):
    from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
    from aliyunsdkcore.auth.signers.access_key_signer import AccessKeySigner
    from aliyunsdkcore.auth.signers.sts_token_signer import StsTokenSigner
    from aliyunsdkcore.request import RpcRequest
    from aliyunsdkcore.utils import parameter_helper

    parameter_helper.get_iso_8061_date = lambda: inp["timestamp"]
    parameter_helper.get_uuid = lambda: inp["nonce"]

    request = RpcRequest("rtc", inp["version"], inp["action"])
    request.set_method(inp["method"])
    # AcsClient.do_action_with_exception sets this before signing.
    request.set_accept_format("JSON")
    for key, value in inp["params"].items():
        request.add_query_param(key, value)
    if inp.get("security_token"):
        signer = StsTokenSigner(StsTokenCredential(inp["access_key_id"], inp["secret"], inp["security_token"]))
    else:
        signer = AccessKeySigner(AccessKeyCredential(inp["access_key_id"], inp["secret"]))
    headers, url = signer.sign(inp["region_id"], request)
    return {
        "url": url,
        "query": parse_qsl(urlsplit(url).query, keep_blank_values=True),
        "string_to_sign": request.string_to_sign,
        "signed_headers": headers,
    }


def canonical_request(method, path, query, headers, payload):
    from alibabacloud_tea_openapi import utils as tea_utils

    canonical_query = tea_utils.get_canonical_query_string(query)
    canonical_headers, signed_headers = tea_utils.get_canonicalized_headers(headers)
    # The same layout as Utils.get_authorization, which does not return its canonical request.
    return f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}"


def v3_request(inp):
    from alibabacloud_rtc20180111 import models as rtc_models
    from alibabacloud_rtc20180111.client import Client
    from alibabacloud_tea_openapi import client as tea_client
    from alibabacloud_tea_openapi import utils_models
    from alibabacloud_tea_openapi.utils import Utils as TeaUtils
    from darabonba.core import DaraCore
    from darabonba.runtime import RuntimeOptions

    TeaUtils.get_timestamp = staticmethod(lambda: inp["timestamp"])
    TeaUtils.get_nonce = staticmethod(lambda: inp["nonce"])
    captured = {}

    class Captured(Exception):
        pass

    def capture(request, runtime=None):
        captured["request"] = request
        raise Captured()

    DaraCore.do_action = staticmethod(capture)
    tea_client.DaraCore.do_action = staticmethod(capture)

    config = utils_models.Config(
        access_key_id=inp["access_key_id"],
        access_key_secret=inp["secret"],
        security_token=inp.get("security_token") or None,
        endpoint=inp["host"],
    )
    client = Client(config)
    request = rtc_models.GetMPUTaskStatusRequest(app_id=inp["app_id"], task_id=inp["task_id"])
    try:
        client.get_mputask_status_with_options(request, RuntimeOptions(autoretry=False))
    except Exception:  # the runtime wraps our Captured in its own exception type
        if "request" not in captured:
            raise
    req = captured["request"]
    headers = {k: str(v) for k, v in req.headers.items()}
    signed = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    return {
        "method": req.method,
        "path": req.pathname,
        "query": {k: str(v) for k, v in req.query.items() if v is not None},
        "headers": headers,
        "canonical_request": canonical_request(
            req.method, req.pathname, req.query, signed, headers["x-acs-content-sha256"]
        ),
    }


def v3_raw(inp):
    from alibabacloud_tea_openapi.utils import Utils as TeaUtils
    from darabonba.request import DaraRequest

    request = DaraRequest()
    request.method = inp["method"]
    request.pathname = inp["path"]
    request.query = dict(inp["query"])
    request.headers = dict(inp["headers"])
    return {
        "canonical_request": canonical_request(
            request.method, request.pathname, request.query, request.headers, inp["payload_sha256"]
        ),
        "authorization": TeaUtils.get_authorization(
            request, SIGN_TYPE, inp["payload_sha256"], inp["access_key_id"], inp["secret"]
        ),
    }


MODES = {"v1_raw": v1_raw, "v1_request": v1_request, "v3_request": v3_request, "v3_raw": v3_raw}


def main():
    data = json.load(sys.stdin)
    cases = data if isinstance(data, list) else [data]
    out = [MODES[case["mode"]](case) for case in cases]
    json.dump(out if isinstance(data, list) else out[0], sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
