"""CPU cost of GetMPUTaskStatus through Alibaba Cloud's official Python SDKs, for `make bench`.

argv: sdk (core | tea), endpoint (host:port), AccessKeyId, AccessKeySecret, AppId, TaskId, reps, calls,
ca (a PEM CA bundle: HTTPS verified against it, as the operator's --ca-bundle; "-": plain HTTP).
- core: the old core SDK (aliyun-python-sdk-core), V1 signature (HMAC-SHA1), GET, ApsaraVideo Live 2016-11-01;
- tea:  today's generated RTC client (alibabacloud_rtc20180111), V3 signature (ACS3-HMAC-SHA256), POST.
One client, 50 warm-up calls, then `reps` sequential runs of `calls` calls each. CPU is the process's
user + system time (time.process_time) around each run, so interpreter start and imports are not counted.
Prints one JSON object: {"sdk", "cpu_seconds_per_1000": [...], "wall_seconds_per_1000": [...]}.
Exits non-zero if any call does not return a status.
"""

import json
import sys
import time


def core_caller(endpoint, ak, secret, app_id, task_id, ca):
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest

    client = AcsClient(ak, secret, "cn-hangzhou", verify=ca)

    def call():
        request = CommonRequest(domain=endpoint, version="2016-11-01", action_name="GetMPUTaskStatus")
        request.set_protocol_type("https" if ca else "http")
        request.set_method("GET")
        request.add_query_param("AppId", app_id)
        request.add_query_param("TaskId", task_id)
        return json.loads(client.do_action_with_exception(request))["Status"]

    return call


def tea_caller(endpoint, ak, secret, app_id, task_id, ca):
    from alibabacloud_rtc20180111 import models as rtc_models
    from alibabacloud_rtc20180111.client import Client
    from alibabacloud_tea_openapi import models as open_api_models

    config = open_api_models.Config(
        access_key_id=ak,
        access_key_secret=secret,
        endpoint=endpoint,
        protocol="https" if ca else "http",
        ca=ca,
    )
    client = Client(config)

    def call():
        request = rtc_models.GetMPUTaskStatusRequest(app_id=app_id, task_id=task_id)
        return client.get_mputask_status(request).body.status

    return call


def main():
    sdk, endpoint, ak, secret, app_id, task_id, reps, calls, ca = sys.argv[1:10]
    reps, calls = int(reps), int(calls)
    ca = None if ca == "-" else ca
    make = {"core": core_caller, "tea": tea_caller}[sdk]
    call = make(endpoint, ak, secret, app_id, task_id, ca)
    for _ in range(50):
        if not isinstance(call(), int):
            sys.exit("warm-up call returned no status")
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            if not isinstance(call(), int):
                sys.exit("a call returned no status")
        cpu.append((time.process_time() - c0) * 1000 / calls)
        wall.append((time.perf_counter() - w0) * 1000 / calls)
    print(json.dumps({"sdk": sdk, "cpu_seconds_per_1000": cpu, "wall_seconds_per_1000": wall}))


if __name__ == "__main__":
    main()
