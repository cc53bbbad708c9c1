"""``/dev/kmsg`` records (``cat /dev/kmsg``, ``dmesg -r``): ``prio,seq,usec,flags;text``.

The stamp is microseconds since boot (Linux Documentation/ABI/testing/dev-kmsg); continuation lines of a
record (device properties) start with a space.
"""

from __future__ import annotations

import re

#: One record: ``pri`` (facility and level), ``seq``, ``usec`` since boot, ``flags``, then ``msg``.
KMSG_RECORD = re.compile(
    r"(?P<pri>\d{1,3}),(?P<seq>\d+),(?P<usec>\d+),(?P<flags>[-+c][^;]{0,31});(?P<msg>.*)", re.DOTALL
)
