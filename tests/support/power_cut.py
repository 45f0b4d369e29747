"""What a power cut may do to the plogs of a crashed writer that used a shared log.

Every plog record the slog still holds was written without an fsync of its own, so after a
power cut each may be lost, zeroed, overwritten with garbage or holed (later pages written
back, an earlier one not), and the plog segments after it with it. `lose_what_the_slog_holds`
does one of these, chosen by `rng`, to each partition's plog, and says what it did.
"""

import os
import random
from collections.abc import Callable
from pathlib import Path

from dupkv.storage.plog import RECORD_HEADER, SEGMENT_HEADER
from dupkv.storage.slog import read_records

DAMAGES = ("kept", "lost", "zeroed", "garbage", "holed")


def lose_what_the_slog_holds(
    slog_dir: Path, plog_dir: Callable[[tuple[int, int]], Path], rng: random.Random
) -> list[str]:
    # partition -> the first decree the slog holds for it
    first = {gpid: records[0][0] for gpid, records in read_records(slog_dir).items()}
    done = []
    for gpid, decree in sorted(first.items()):
        segments = sorted(plog_dir(gpid).glob("log.*"))
        starts = [int(seg.name[4:]) for seg in segments]
        holder = max((i for i, s in enumerate(starts) if s <= decree), default=None)
        if holder is None:
            continue
        data = segments[holder].read_bytes()
        offset = SEGMENT_HEADER.size
        for _ in range(decree - starts[holder]):
            offset += RECORD_HEADER.size + RECORD_HEADER.unpack_from(data, offset)[0]
        how = rng.choice(DAMAGES)
        done.append(f"{gpid[0]}.{gpid[1]}: decree {decree} on {how}")
        at_risk = [(segments[holder], offset)] + [(seg, 0) for seg in segments[holder + 1 :]]
        for seg, start in at_risk:
            size = seg.stat().st_size
            if how == "lost":
                os.truncate(seg, start)
            elif how != "kept":
                end = min(size, start + 4096) if how == "holed" else size
                fill = os.urandom if how == "garbage" else bytes
                with open(seg, "r+b") as f:
                    f.seek(start)
                    f.write(fill(end - start))
    return done
