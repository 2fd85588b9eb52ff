#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Run once by hand when a target's input format changes (needs protoc); the output is committed,
so CI never runs this. Seeds are real encodings: events as protoc encodes them from text
format, tokens and lines in the exact form the services write them, and the byte layouts of
libFuzzer's FuzzedDataProvider for the targets that read structured input.
"""
import base64
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NOW_US = 1_795_305_600_000_000  # kNowUs in fuzz_support.h: 2026-11-22T00:00:00Z
NOW_MS = NOW_US // 1000


def encode_event(text):
    return subprocess.run(
        ["protoc", f"--proto_path={ROOT}/proto", "--encode=tidemark.v1.Event",
         "tidemark/v1/event.proto"],
        input=text.encode(), capture_output=True, check=True).stdout


def measure(name, kind, value):
    return f'measures {{ key: "{name}" value {{ {kind}: {value} }} }}\n'


def dim(name, value):
    return f'dimensions {{ key: "{name}" value: "{value}" }}\n'


EVENTS = {
    # The reference turbine, every measure type, milliseconds.
    "turbine": f'device_id: "turbine-0001" time: {NOW_MS - 10_000} time_unit: TIME_UNIT_MILLISECONDS\n'
    + dim("region", "eu-west") + dim("model", "V150")
    + measure("speed", "int64_value", 60) + measure("temperature", "double_value", 11.2)
    + measure("running", "bool_value", "true") + measure("status", "string_value", '"ok"'),
    # Nanoseconds with a client version and a stamped ingest time (as on tidemark.raw).
    "nanos_versioned": f'device_id: "meter-17" time: {NOW_US * 1000 - 123_456_789} '
    f'time_unit: TIME_UNIT_NANOSECONDS version: 7 ingest_time_us: {NOW_US}\n'
    + measure("power", "double_value", -0.25),
    "seconds": f'device_id: "s" time: {NOW_US // 1_000_000 - 60} time_unit: TIME_UNIT_SECONDS\n'
    + measure("v", "int64_value", -9223372036854775808),
    "unspecified_unit": f'device_id: "u" time: {NOW_MS}\n' + measure("x", "int64_value", 1),
    "micros_future": f'device_id: "ahead" time: {NOW_US + 20 * 60_000_000} '
    f'time_unit: TIME_UNIT_MICROSECONDS ingest_time_us: {NOW_US}\n'
    + measure("t", "double_value", 1e300),
    "missing_device": f'time: {NOW_MS} time_unit: TIME_UNIT_MILLISECONDS\n'
    + measure("x", "double_value", 1),
    "too_far_future": f'device_id: "f" time: {NOW_MS + 2 * 86_400_000} time_unit: TIME_UNIT_MILLISECONDS\n'
    + measure("x", "double_value", 1),
    "before_retention": f'device_id: "old" time: {NOW_MS - 8 * 86_400_000}\n'
    + measure("x", "double_value", 1),
    "reserved_name": f'device_id: "r" time: {NOW_MS}\n' + dim("time", "x")
    + measure("measure_value::double", "double_value", 1),
    "non_finite": f'device_id: "n" time: {NOW_MS}\n' + measure("x", "double_value", "nan")
    + measure("y", "double_value", "-inf"),
    "no_measures": f'device_id: "e" time: {NOW_MS}\n' + dim("a", "b"),
    "unset_measure": f'device_id: "e" time: {NOW_MS}\n measures {{ key: "m" value {{ }} }}\n',
    # Bytes that are awkward downstream: NUL, quotes, braces, backslashes, non-ASCII.
    "awkward_strings": f'device_id: "dev\\"{{x=1}}" time: {NOW_MS}\n'
    + dim("site{a=\\\"b\\\"}", "v\\\\,=}") + dim("\\316\\251", "\\000nul")
    + measure("s", "string_value", '"a\\000b\\nc\\"d"') + measure("m{k=\\\"v\\\"}", "int64_value", 3),
    "replayed": f'device_id: "lake" time: {NOW_MS} replayed: true ingest_time_us: {NOW_US - 5}\n'
    + measure("x", "double_value", 2.5),
}


def urlsafe(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def provider_string(s):
    """A string as FuzzedDataProvider::ConsumeRandomLengthString reads it back."""
    return s.replace(b"\\", b"\\\\") + b"\\;"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    if not shutil.which("protoc"):
        sys.exit("protoc is needed (scripts/install-deps.sh installs it)")
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    rng = random.Random(8)
    events = {name: encode_event(text) for name, text in EVENTS.items()}

    for name, data in events.items():
        write("fuzz_event_validation", name, data)
        write("fuzz_archive_json_line", "event_" + name, b"\x01" + data)

    raw_sets = {
        "one_valid": ["turbine"],
        "mixed": ["turbine", "nanos_versioned", "seconds", "awkward_strings"],
        "all": list(EVENTS)[:8],
    }
    for name, keys in raw_sets.items():
        write("fuzz_raw_record", name, b"".join(provider_string(events[k]) for k in keys))
    write("fuzz_raw_record", "garbage_and_valid",
          provider_string(b"\xff\xff\xff\x0f") + provider_string(events["replayed"]) +
          provider_string(b"not an event"))
    write("fuzz_raw_record", "duplicates",
          provider_string(events["turbine"]) * 3 + provider_string(events["nanos_versioned"]))

    jsons = [
        (0, b'{"Time": %d.499, "TimeUnit": "MILLISECONDS", "DeviceID": "meter-17", '
            b'"region": "eu-west", "temperature_measure": 11.2, "count_measure": 3}' % NOW_MS),
        (0, b'{"DeviceID": "m", "Time": %d, "TimeUnit": "NANOSECONDS", "v_measure": 1}'
            % (NOW_US * 1000 + 1500)),
        (0, b'{"DeviceID": "m", "Time": %d, "big_measure": 18446744073709551615, '
            b'"neg_measure": -9223372036854775808}' % NOW_MS),
        (0, b'{"DeviceID": "m", "Time": "%d", "TimeUnit": "s", "x_MEASURE": true, '
            b'"note": "a\\u0000b"}' % (NOW_US // 1_000_000)),
        (0, b'{"DeviceID": "m", "x": {"nested": 1}}'),
        (1, b'{"turbineId": "turbine-0001", "speed": 60}'),
        (1, b'{"turbineId": 17, "speed": 6.5e1, "gust": 1e400, "ok": false}'),
        (1, b'{"turbineId": "t", "speed": '),
        (2, b'{"ts": %d, "unit": "ns", "device": "d1", "speed": 12, "temp": -4.5, '
            b'"site": 7, "label": null}' % (NOW_US * 1000 + 999)),
        (2, b'{"ts": %d, "unit": "MICROSECONDS", "device": "d2", "SPEED": 1, "temp": "hot"}'
            % NOW_US),
        (3, b'{"id": "x", "a": 1, "b": 2.5, "c": false, "tag": "t\\"q", "n": null}'),
        (3, b'[1, 2, 3]'),
    ]
    for i, (sel, text) in enumerate(jsons):
        write("fuzz_json_mapping", f"seed_{i:02d}", bytes([sel]) + text)

    def cursor_token(series_id, time_us, remaining, key=b""):
        text = b"v1:%d:%d:%d" % (series_id, time_us, remaining)
        if key:
            text += b":" + urlsafe(key)
        return urlsafe(text)

    tokens = [
        b"",
        cursor_token(123, NOW_US, -1),
        cursor_token(-(2 ** 63), -(2 ** 63), 100, b"region=eu-west,model=V150"),
        cursor_token(2 ** 63 - 1, 0, 0, b"\x00:\xff"),
        urlsafe(b"s1:42"),
        urlsafe(b"s1:-1"),
        urlsafe(b"v2:1:2:3"),
        b"not base64!",
    ]
    for i, token in enumerate(tokens):
        key = [b"", b"rack=7", b"a:b\\c"][i % 3]
        ints = bytes(rng.getrandbits(8) for _ in range(40))
        write("fuzz_page_tokens", f"seed_{i:02d}", provider_string(key) + token + ints)

    metadata = [
        b"",
        b"v1 %d %d" % (NOW_US - 300_000_000, NOW_US - 295_000_000),
        b"v1 -9223372036854775808 -9223372036854775808",
        b"v1 %d" % NOW_US,
        b"v2 1 2",
    ]
    for i, m in enumerate(metadata):
        for j in range(2):
            script = bytes(rng.getrandbits(8) for _ in range(64 + 192 * j))
            write("fuzz_aggregator_checkpoint", f"seed_{i:02d}_{j}", provider_string(m) + script)

    lines = [
        b'{"device_id":"turbine-0001","time":%d,"time_unit":"MILLISECONDS",'
        b'"event_time":"2026-11-21T23:59:50.000000Z","dimensions":{"model":"V150",'
        b'"region":"eu-west"},"measures":{"running":true,"speed":60,"status":"ok",'
        b'"temperature":11.2},"ingest_time_us":%d,"ingest_time":"2026-11-22T00:00:00.000000Z",'
        b'"kafka":{"topic":"tidemark.raw","partition":3,"offset":42}}' % (NOW_MS - 10_000, NOW_US),
        b'{"device_id":"m","time":%d,"time_unit":"NANOSECONDS","dimensions":{},'
        b'"measures":{"p":-2.5e-7,"n":null},"version":7,"ingest_time_us":%d}'
        % (NOW_US * 1000 - 1, NOW_US),
        b'{"device_id":"a\\u0000\\"b","time":1,"time_unit":"SECONDS","dimensions":'
        b'{"\\u00e9{=}":"\\\\"},"measures":{"s":"x\\ny","i":-9223372036854775808},'
        b'"ingest_time_us":0}',
        b'{"device_id":"m","time":1.5,"time_unit":"SECONDS","dimensions":{},"measures":{},'
        b'"ingest_time_us":0}',
        b'{"device_id":"m"}',
    ]
    for i, line in enumerate(lines):
        write("fuzz_archive_json_line", f"line_{i:02d}", b"\x00" + line)

    for target in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        files = os.listdir(os.path.join(HERE, "corpus", target))
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    main()
