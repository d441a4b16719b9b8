"""Calls GetMPUTaskStatus through Alibaba Cloud's official Python SDKs, for tests/simulator.rs.

argv: endpoint (host:port, plain HTTP), AccessKeyId, AccessKeySecret, AppId, TaskId.
Prints one JSON object: {"v1": <Status or error code>, "v3": <Status or error code>}.
V1 goes through the old core SDK (aliyun-python-sdk-core, HMAC-SHA1, GET with every parameter in
the query string); V3 through today's generated RTC client (ACS3-HMAC-SHA256, POST).
"""

import json
import sys


def call_v1(endpoint, ak, secret, app_id, task_id):
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest

    client = AcsClient(ak, secret, "cn-hangzhou")
    request = CommonRequest(domain=endpoint, version="2016-11-01", action_name="GetMPUTaskStatus")
    request.set_protocol_type("http")
    request.set_method("GET")
    request.add_query_param("AppId", app_id)
    request.add_query_param("TaskId", task_id)
    try:
        return json.loads(client.do_action_with_exception(request))["Status"]
    except ServerException as e:
        print(e.get_error_msg(), file=sys.stderr)
        return e.get_error_code()


def call_v3(endpoint, ak, secret, app_id, task_id):
    from alibabacloud_rtc20180111 import models as rtc_models
    from alibabacloud_rtc20180111.client import Client
    from alibabacloud_tea_openapi import models as open_api_models

    config = open_api_models.Config(
        access_key_id=ak, access_key_secret=secret, endpoint=endpoint, protocol="http"
    )
    client = Client(config)
    try:
        response = client.get_mputask_status(
            rtc_models.GetMPUTaskStatusRequest(app_id=app_id, task_id=task_id)
        )
        return response.body.status
    except Exception as e:  # the tea runtime raises its own error types; report the code
        return getattr(e, "code", None) or repr(e)


def main():
    endpoint, ak, secret, app_id, task_id = sys.argv[1:6]
    print(
        json.dumps(
            {
                "v1": call_v1(endpoint, ak, secret, app_id, task_id),
                "v3": call_v3(endpoint, ak, secret, app_id, task_id),
            }
        )
    )


if __name__ == "__main__":
    main()
