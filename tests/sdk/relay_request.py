"""What Alibaba Cloud's official Live SDK (alibabacloud-live20161101, the Tea SDK) sends for a relay,
for tests/sdk_signatures.rs: the managed-relay operator must send the same query.

stdin: a JSON list of cases {"action": "start" | "update", "appId", "taskId", "relay": <an
MpuRelayTask's spec.relay, as in the manifest>}. stdout: a JSON list, per case, of the query
parameters the SDK's client built for the call (its `call_api` is replaced by a recorder, so
nothing is sent).

A manifest's values become the SDK model's string fields the way its users pass them: integers
as `str(n)`, fractions as Python's `str(float)` (`0.5`, `1.0`), booleans inside the encoding
parameters as `true`/`false`, enums by their wire names.
"""

import json
import sys

from alibabacloud_live20161101 import models as m
from alibabacloud_live20161101.client import Client
from alibabacloud_tea_openapi import utils_models as om
from darabonba.runtime import RuntimeOptions


class Recorded(Exception):
    def __init__(self, query):
        self.query = query


def recorder(params, request, runtime):
    raise Recorded(dict(request.query))


def text(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(v)
    return str(v)


def build(action, case):
    prefix = "StartLiveMPUTaskRequest" if action == "start" else "UpdateLiveMPUTaskRequest"
    model = lambda suffix: getattr(m, prefix + suffix)
    relay = case["relay"]
    mode = {"Single": "0", "Mixed": "1"}[relay.get("mixMode", "Mixed")]
    kwargs = dict(app_id=case["appId"], task_id=case["taskId"], channel_id=relay["channelId"], mix_mode=mode)
    if "streamURL" in relay:
        kwargs["stream_url"] = relay["streamURL"]
    if "multiStreamURL" in relay:
        kwargs["multi_stream_url"] = [
            model("MultiStreamURL")(url=u["url"], is_ali_cdn=u.get("isAliCdn")) for u in relay["multiStreamURL"]
        ]
    if "singleSubParams" in relay:
        p = relay["singleSubParams"]
        kwargs["single_sub_params"] = model("SingleSubParams")(
            user_id=p["userId"], stream_type=text(p.get("streamType")), source_type=p.get("sourceType")
        )
    if "transcodeParams" in relay:
        t = relay["transcodeParams"]
        tp = {}
        if "layout" in t:
            panes = []
            for p in t["layout"].get("userPanes", []):
                u = p.get("userInfo")
                panes.append(
                    model("TranscodeParamsLayoutUserPanes")(
                        x=text(p.get("left")), y=text(p.get("top")), width=text(p.get("width")),
                        height=text(p.get("height")), zorder=text(p.get("zOrder")),
                        render_mode=text(p.get("renderMode")),
                        background_image_url=p.get("backgroundImageUrl"),
                        user_info=None if u is None else model("TranscodeParamsLayoutUserPanesUserInfo")(
                            user_id=u.get("userId"), channel_id=u.get("channelId"), source_type=u.get("sourceType")
                        ),
                    )
                )
            tp["layout"] = model("TranscodeParamsLayout")(user_panes=panes)
        if "encodeParams" in t:
            e = t["encodeParams"]
            tp["encode_params"] = model("TranscodeParamsEncodeParams")(
                video_width=text(e.get("videoWidth")), video_height=text(e.get("videoHeight")),
                video_framerate=text(e.get("videoFramerate")), video_bitrate=text(e.get("videoBitrate")),
                video_gop=text(e.get("videoGop")), video_codec=e.get("videoCodec"),
                audio_sample_rate=text(e.get("audioSampleRate")), audio_bitrate=text(e.get("audioBitrate")),
                audio_channels=text(e.get("audioChannels")), audio_only=text(e.get("audioOnly")),
                enhanced_param=e.get("enhancedParam"),
            )
        if "background" in t:
            b = t["background"]
            tp["background"] = model("TranscodeParamsBackground")(url=b.get("url"), render_mode=text(b.get("renderMode")))
        tp["user_infos"] = [
            model("TranscodeParamsUserInfos")(
                user_id=u["userId"], channel_id=u.get("channelId"), source_type=u.get("sourceType"),
                stream_type=text(u.get("streamType")),
            )
            for u in t.get("userInfos", [])
        ]
        kwargs["transcode_params"] = model("TranscodeParams")(**tp)
    if action == "start":
        if "region" in relay:
            kwargs["region"] = relay["region"]
        if "maxIdleTime" in relay:
            kwargs["max_idle_time"] = text(relay["maxIdleTime"])
        return getattr(m, prefix)(**kwargs)
    return getattr(m, prefix)(**kwargs)


def main():
    client = Client(om.Config(access_key_id="ak", access_key_secret="sk", endpoint="127.0.0.1:9", protocol="http"))
    client.call_api = recorder
    out = []
    for case in json.load(sys.stdin):
        request = build(case["action"], case)
        call = client.start_live_mputask_with_options if case["action"] == "start" else client.update_live_mputask_with_options
        try:
            call(request, RuntimeOptions())
            raise SystemExit("the SDK sent nothing to record")
        except Recorded as r:
            out.append({k: v for k, v in r.query.items() if v is not None})
    json.dump(out, sys.stdout)


main()
