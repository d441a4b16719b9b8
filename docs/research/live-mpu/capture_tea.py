"""Drive alibabacloud-live20161101 (Tea/Darabonba SDK) against the local capture server.

Usage: python capture_tea.py PORT [--fixed] [--v2]
  --fixed : monkeypatch Utils.get_nonce / Utils.get_timestamp to constants so the
            signature is reproducible (nothing else is patched).
  --v2    : Config.signature_algorithm='v2' -> legacy RPC HMAC-SHA1 path (do_rpcrequest).
"""
import sys
from alibabacloud_tea_openapi import utils_models as om
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_live20161101.client import Client
from alibabacloud_live20161101 import models as m
from darabonba.runtime import RuntimeOptions

PORT = int(sys.argv[1])
FIXED = '--fixed' in sys.argv
V2 = '--v2' in sys.argv
if FIXED:
    Utils.get_nonce = staticmethod(lambda: '3c9f7d2e5b1a4c6d8e0f1a2b3c4d5e6f')
    Utils.get_timestamp = staticmethod(lambda: '2024-01-02T03:04:05Z')

cfg = om.Config(access_key_id='LTAI5tFakeAccessKeyId01', access_key_secret='FakeAccessKeySecretForTests0123',
                endpoint=f'127.0.0.1:{PORT}', protocol='http', region_id='cn-shanghai')
if V2:
    cfg.signature_algorithm = 'v2'
client = Client(cfg)
rt = RuntimeOptions(autoretry=False, max_attempts=0)

def run(label, fn, req):
    print('==', label)
    resp = fn(req, rt)
    print('   response body ->', resp.body.to_map())

# (a) single-stream start
a = m.StartLiveMPUTaskRequest(
    app_id='demo-app', channel_id='lobby', task_id='lobby-relay-1', mix_mode='0',
    stream_url='rtmp://push.example.com/live/lobby',
    single_sub_params=m.StartLiveMPUTaskRequestSingleSubParams(user_id='host-1', stream_type='0', source_type='camera'),
    region='CN-Shanghai', max_idle_time='600')
run('a StartLiveMPUTask single', client.start_live_mputask_with_options, a)

def panes(cls, ucls, layout):
    return [cls(x=x, y=y, width=w, height=h, zorder=z, render_mode=rm,
                user_info=ucls(user_id=u, source_type='camera'))
            for (x, y, w, h, z, rm, u) in layout]

# (b) mixed start
b = m.StartLiveMPUTaskRequest(
    app_id='demo-app', channel_id='lobby', task_id='lobby-mix-1', mix_mode='1', region='CN-Shanghai', max_idle_time='600',
    multi_stream_url=[m.StartLiveMPUTaskRequestMultiStreamURL(url='rtmp://a/x', is_ali_cdn=True),
                      m.StartLiveMPUTaskRequestMultiStreamURL(url='rtmp://b/y', is_ali_cdn=False)],
    transcode_params=m.StartLiveMPUTaskRequestTranscodeParams(
        layout=m.StartLiveMPUTaskRequestTranscodeParamsLayout(user_panes=panes(
            m.StartLiveMPUTaskRequestTranscodeParamsLayoutUserPanes,
            m.StartLiveMPUTaskRequestTranscodeParamsLayoutUserPanesUserInfo,
            [('0.0', '0.0', '0.5', '1.0', '0', '0', 'host-1'), ('0.5', '0.0', '0.5', '1.0', '1', '1', 'guest-2')])),
        encode_params=m.StartLiveMPUTaskRequestTranscodeParamsEncodeParams(
            video_width='1280', video_height='720', video_framerate='25', video_bitrate='1500', video_gop='50',
            video_codec='H.264', audio_sample_rate='48000', audio_bitrate='64', audio_channels='2', audio_only='false',
            enhanced_param='{"profile":"main","preset":"superfast"}'),
        background=m.StartLiveMPUTaskRequestTranscodeParamsBackground(url='https://img.example.com/bg.png', render_mode='1'),
        user_infos=[m.StartLiveMPUTaskRequestTranscodeParamsUserInfos(user_id='host-1', stream_type='0', source_type='camera'),
                    m.StartLiveMPUTaskRequestTranscodeParamsUserInfos(user_id='guest-2', stream_type='0', source_type='camera', channel_id='lobby')]))
run('b StartLiveMPUTask mixed', client.start_live_mputask_with_options, b)

# (b2) same shape but native python float/int/bool values (what happens if caller ignores the str annotations)
b2 = m.StartLiveMPUTaskRequest(
    app_id='demo-app', channel_id='lobby', task_id='lobby-mix-2', mix_mode=1, max_idle_time=600,
    multi_stream_url=[m.StartLiveMPUTaskRequestMultiStreamURL(url='rtmp://a/x', is_ali_cdn=True)],
    transcode_params=m.StartLiveMPUTaskRequestTranscodeParams(
        layout=m.StartLiveMPUTaskRequestTranscodeParamsLayout(user_panes=[
            m.StartLiveMPUTaskRequestTranscodeParamsLayoutUserPanes(x=0.0, y=0.5, width=0.25, height=1.0, zorder=0, render_mode=1)]),
        encode_params=m.StartLiveMPUTaskRequestTranscodeParamsEncodeParams(video_width=1280, audio_only=False)))
run('b2 StartLiveMPUTask native-typed values', client.start_live_mputask_with_options, b2)

# (b3) TranscodeParams with only EncodeParams (shows empty-list emission)
b3 = m.StartLiveMPUTaskRequest(
    app_id='demo-app', channel_id='lobby', task_id='lobby-audio-1', mix_mode='1', stream_url='rtmp://push.example.com/live/a?auth_key=1-0-0-abc&x=y z',
    transcode_params=m.StartLiveMPUTaskRequestTranscodeParams(
        encode_params=m.StartLiveMPUTaskRequestTranscodeParamsEncodeParams(audio_only='true', audio_sample_rate='48000', audio_bitrate='64', audio_channels='2'),
        layout=m.StartLiveMPUTaskRequestTranscodeParamsLayout()),
    sei_params=m.StartLiveMPUTaskRequestSeiParams(payload_type='100',
        layout_volume=m.StartLiveMPUTaskRequestSeiParamsLayoutVolume(follow_idr='1', interval='1000'),
        pass_through=m.StartLiveMPUTaskRequestSeiParamsPassThrough(payload_content='héllo "q"', payload_content_key='udd', follow_idr='0', interval='2000')))
run('b3 StartLiveMPUTask audio-only + SEI + special chars', client.start_live_mputask_with_options, b3)

# (c) update with changed layout
c = m.UpdateLiveMPUTaskRequest(
    app_id='demo-app', channel_id='lobby', task_id='lobby-mix-1', mix_mode='1',
    multi_stream_url=[m.UpdateLiveMPUTaskRequestMultiStreamURL(url='rtmp://a/x', is_ali_cdn=True),
                      m.UpdateLiveMPUTaskRequestMultiStreamURL(url='rtmp://b/y', is_ali_cdn=False)],
    transcode_params=m.UpdateLiveMPUTaskRequestTranscodeParams(
        layout=m.UpdateLiveMPUTaskRequestTranscodeParamsLayout(user_panes=panes(
            m.UpdateLiveMPUTaskRequestTranscodeParamsLayoutUserPanes,
            m.UpdateLiveMPUTaskRequestTranscodeParamsLayoutUserPanesUserInfo,
            [('0.0', '0.0', '1.0', '1.0', '0', '1', 'guest-2'), ('0.7', '0.7', '0.25', '0.25', '1', '0', 'host-1')])),
        encode_params=m.UpdateLiveMPUTaskRequestTranscodeParamsEncodeParams(
            video_width='1280', video_height='720', video_framerate='25', video_bitrate='1500', video_gop='50',
            video_codec='H.264', audio_sample_rate='48000', audio_bitrate='64', audio_channels='2', audio_only='false'),
        user_infos=[m.UpdateLiveMPUTaskRequestTranscodeParamsUserInfos(user_id='host-1', stream_type='0', source_type='camera'),
                    m.UpdateLiveMPUTaskRequestTranscodeParamsUserInfos(user_id='guest-2', stream_type='0', source_type='camera')]))
run('c UpdateLiveMPUTask', client.update_live_mputask_with_options, c)

# (d) stop
run('d StopLiveMPUTask', client.stop_live_mputask_with_options, m.StopLiveMPUTaskRequest(app_id='demo-app', task_id='lobby-relay-1'))

# (e) list
run('e ListRtcMPUTaskDetail by task', client.list_rtc_mputask_detail_with_options, m.ListRtcMPUTaskDetailRequest(app_id='demo-app', task_id='lobby-relay-1'))
run('e2 ListRtcMPUTaskDetail paged', client.list_rtc_mputask_detail_with_options, m.ListRtcMPUTaskDetailRequest(app_id='demo-app', page_no=1, page_size=20))

# event subscription ops
run('f CreateRtcMPUEventSub', client.create_rtc_mpuevent_sub_with_options, m.CreateRtcMPUEventSubRequest(app_id='demo-app', callback_url='https://cb.example.com/mpu?x=1', channel_ids='lobby,stage'))
run('g UpdateRtcMPUEventSub', client.update_rtc_mpuevent_sub_with_options, m.UpdateRtcMPUEventSubRequest(app_id='demo-app', callback_url='https://cb.example.com/mpu2', channel_ids='lobby'))
run('h DescribeRtcMPUEventSub', client.describe_rtc_mpuevent_sub_with_options, m.DescribeRtcMPUEventSubRequest(app_id='demo-app'))
run('i DeleteRtcMPUEventSub', client.delete_rtc_mpuevent_sub_with_options, m.DeleteRtcMPUEventSubRequest(app_id='demo-app'))
run('j ListRtcMPUEventSubRecord', client.list_rtc_mpuevent_sub_record_with_options, m.ListRtcMPUEventSubRecordRequest(app_id='demo-app', start_time='2024-01-01T00:00:00Z', end_time='2024-01-02T00:00:00Z', page_no=1, page_size=10, sub_id='sub-1'))
