"""Drive aliyun-python-sdk-live (old core SDK, aliyunsdkcore) against the local capture server.

Usage: python capture_core.py PORT [--fixed]
  --fixed: monkeypatch parameter_helper.get_uuid / get_iso_8061_date to constants.
"""
import sys
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.utils import parameter_helper
from aliyunsdklive.request.v20161101 import (
    StartLiveMPUTaskRequest, UpdateLiveMPUTaskRequest, StopLiveMPUTaskRequest, ListRtcMPUTaskDetailRequest,
    CreateRtcMPUEventSubRequest, UpdateRtcMPUEventSubRequest, DescribeRtcMPUEventSubRequest,
    DeleteRtcMPUEventSubRequest, ListRtcMPUEventSubRecordRequest)

PORT = int(sys.argv[1])
if '--fixed' in sys.argv:
    parameter_helper.get_uuid = lambda: '3c9f7d2e5b1a4c6d8e0f1a2b3c4d5e6f'
    parameter_helper.get_iso_8061_date = lambda: '2024-01-02T03:04:05Z'

client = AcsClient('LTAI5tFakeAccessKeyId01', 'FakeAccessKeySecretForTests0123', 'cn-shanghai', auto_retry=False)

def send(label, req):
    req.set_endpoint(f'127.0.0.1:{PORT}')
    req.set_protocol_type('http')
    print('==', label)
    print('   ->', client.do_action_with_exception(req).decode())

# (a) single
r = StartLiveMPUTaskRequest.StartLiveMPUTaskRequest()
r.set_AppId('demo-app'); r.set_ChannelId('lobby'); r.set_TaskId('lobby-relay-1'); r.set_MixMode('0')
r.set_StreamURL('rtmp://push.example.com/live/lobby')
r.set_SingleSubParams({'UserId': 'host-1', 'StreamType': '0', 'SourceType': 'camera'})
r.set_Region('CN-Shanghai'); r.set_MaxIdleTime('600')
send('a StartLiveMPUTask single', r)

# (b) mixed, string values in the same (alphabetical) key order as the Tea SDK emits
r = StartLiveMPUTaskRequest.StartLiveMPUTaskRequest()
r.set_AppId('demo-app'); r.set_ChannelId('lobby'); r.set_TaskId('lobby-mix-1'); r.set_MixMode('1')
r.set_Region('CN-Shanghai'); r.set_MaxIdleTime('600')
r.set_MultiStreamURL([{'IsAliCdn': True, 'URL': 'rtmp://a/x'}, {'IsAliCdn': False, 'URL': 'rtmp://b/y'}])
r.set_TranscodeParams({
    'Background': {'RenderMode': '1', 'URL': 'https://img.example.com/bg.png'},
    'EncodeParams': {'AudioBitrate': '64', 'AudioChannels': '2', 'AudioOnly': 'false', 'AudioSampleRate': '48000',
                     'EnhancedParam': '{"profile":"main","preset":"superfast"}',
                     'VideoBitrate': '1500', 'VideoCodec': 'H.264', 'VideoFramerate': '25', 'VideoGop': '50',
                     'VideoHeight': '720', 'VideoWidth': '1280'},
    'Layout': {'UserPanes': [
        {'Height': '1.0', 'RenderMode': '0', 'UserInfo': {'SourceType': 'camera', 'UserId': 'host-1'}, 'Width': '0.5', 'X': '0.0', 'Y': '0.0', 'ZOrder': '0'},
        {'Height': '1.0', 'RenderMode': '1', 'UserInfo': {'SourceType': 'camera', 'UserId': 'guest-2'}, 'Width': '0.5', 'X': '0.5', 'Y': '0.0', 'ZOrder': '1'}]},
    'UserInfos': [{'SourceType': 'camera', 'StreamType': '0', 'UserId': 'host-1'},
                  {'ChannelId': 'lobby', 'SourceType': 'camera', 'StreamType': '0', 'UserId': 'guest-2'}]})
send('b StartLiveMPUTask mixed (str values)', r)

# (b2) native python types, caller-chosen key order, non-ASCII
r = StartLiveMPUTaskRequest.StartLiveMPUTaskRequest()
r.set_AppId('demo-app'); r.set_ChannelId('lobby'); r.set_TaskId('lobby-mix-2'); r.set_MixMode(1); r.set_MaxIdleTime(600)
r.set_MultiStreamURL([{'URL': 'rtmp://a/x', 'IsAliCdn': True}])
r.set_TranscodeParams({'Layout': {'UserPanes': [{'X': 0.0, 'Y': 0.5, 'Width': 0.25, 'Height': 1.0, 'ZOrder': 0, 'RenderMode': 1,
                                                 'UserInfo': {'UserId': 'hôst', 'SourceType': 'camera', 'StreamType': 0}}]},
                       'EncodeParams': {'VideoWidth': 1280, 'AudioOnly': False}})
send('b2 StartLiveMPUTask native types', r)

# (c) update
r = UpdateLiveMPUTaskRequest.UpdateLiveMPUTaskRequest()
r.set_AppId('demo-app'); r.set_ChannelId('lobby'); r.set_TaskId('lobby-mix-1'); r.set_MixMode('1')
r.set_MultiStreamURL([{'IsAliCdn': True, 'URL': 'rtmp://a/x'}, {'IsAliCdn': False, 'URL': 'rtmp://b/y'}])
r.set_TranscodeParams({
    'EncodeParams': {'AudioBitrate': '64', 'AudioChannels': '2', 'AudioOnly': 'false', 'AudioSampleRate': '48000',
                     'VideoBitrate': '1500', 'VideoCodec': 'H.264', 'VideoFramerate': '25', 'VideoGop': '50',
                     'VideoHeight': '720', 'VideoWidth': '1280'},
    'Layout': {'UserPanes': [
        {'Height': '1.0', 'RenderMode': '1', 'UserInfo': {'SourceType': 'camera', 'UserId': 'guest-2'}, 'Width': '1.0', 'X': '0.0', 'Y': '0.0', 'ZOrder': '0'},
        {'Height': '0.25', 'RenderMode': '0', 'UserInfo': {'SourceType': 'camera', 'UserId': 'host-1'}, 'Width': '0.25', 'X': '0.7', 'Y': '0.7', 'ZOrder': '1'}]},
    'UserInfos': [{'SourceType': 'camera', 'StreamType': '0', 'UserId': 'host-1'},
                  {'SourceType': 'camera', 'StreamType': '0', 'UserId': 'guest-2'}]})
send('c UpdateLiveMPUTask', r)

r = StopLiveMPUTaskRequest.StopLiveMPUTaskRequest(); r.set_AppId('demo-app'); r.set_TaskId('lobby-relay-1')
send('d StopLiveMPUTask', r)
r = ListRtcMPUTaskDetailRequest.ListRtcMPUTaskDetailRequest(); r.set_AppId('demo-app'); r.set_TaskId('lobby-relay-1')
send('e ListRtcMPUTaskDetail by task', r)
r = ListRtcMPUTaskDetailRequest.ListRtcMPUTaskDetailRequest(); r.set_AppId('demo-app'); r.set_PageNo(1); r.set_PageSize(20)
send('e2 ListRtcMPUTaskDetail paged', r)
r = CreateRtcMPUEventSubRequest.CreateRtcMPUEventSubRequest(); r.set_AppId('demo-app'); r.set_CallbackUrl('https://cb.example.com/mpu?x=1'); r.set_ChannelIds('lobby,stage')
send('f CreateRtcMPUEventSub', r)
r = UpdateRtcMPUEventSubRequest.UpdateRtcMPUEventSubRequest(); r.set_AppId('demo-app'); r.set_CallbackUrl('https://cb.example.com/mpu2'); r.set_ChannelIds('lobby')
send('g UpdateRtcMPUEventSub', r)
r = DescribeRtcMPUEventSubRequest.DescribeRtcMPUEventSubRequest(); r.set_AppId('demo-app')
send('h DescribeRtcMPUEventSub', r)
r = DeleteRtcMPUEventSubRequest.DeleteRtcMPUEventSubRequest(); r.set_AppId('demo-app')
send('i DeleteRtcMPUEventSub', r)
r = ListRtcMPUEventSubRecordRequest.ListRtcMPUEventSubRecordRequest(); r.set_AppId('demo-app'); r.set_StartTime('2024-01-01T00:00:00Z'); r.set_EndTime('2024-01-02T00:00:00Z'); r.set_PageNo(1); r.set_PageSize(10); r.set_SubId('sub-1')
send('j ListRtcMPUEventSubRecord', r)
