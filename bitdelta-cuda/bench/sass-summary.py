#!/usr/bin/env python3
"""Per kernel of a profile-sass.csv[.xz] (profile-step-device.sh's DETAILS pass: ncu's source page, SASS rows), in the
order ncu profiled them: the warp instructions executed (also by opcode), the warp stall samples by reason, and the
instructions with the most samples. Usage: sass-summary.py PROFILE_SASS_CSV[.xz] [TOP (default 8)]

A loop body's instructions show how many times the loop ran over all warps (its rows' "Instructions Executed"), so
instructions per warp and iteration = the kernel's total over that count.
"""
import collections
import csv
import io
import lzma
import sys


def kernels(path):
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", errors="replace") as handle:
        rows = list(csv.reader(io.StringIO(handle.read())))
    found, current = [], None
    for row in rows:
        if row and row[0] == "Kernel Name":
            current = {"name": row[1], "rows": []}
            found.append(current)
        elif row and row[0] == "Address" and current is not None:
            current["header"] = row
        elif row and current is not None and "header" in current:
            current["rows"].append(row)
    return found


def number(row, column):
    try:
        return float(row[column].replace(",", ""))
    except (IndexError, ValueError):
        return 0.0


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    seen = set()
    for index, kernel in enumerate(kernels(sys.argv[1])):
        header = kernel["header"]
        column = {name: i for i, name in enumerate(header)}
        # ncu prints each profiled kernel's page twice in a row; the second copy is skipped.
        key = (kernel["name"], tuple(tuple(r[:6]) for r in kernel["rows"][:40]))
        if key in seen:
            continue
        seen.add(key)
        executed = column["Instructions Executed"]
        samples = column["Warp Stall Sampling (All Samples)"]
        reasons = [name for name in header if name.startswith("stall_") and "Not Issued" not in name]
        total = sum(number(r, executed) for r in kernel["rows"])
        sampled = sum(number(r, samples) for r in kernel["rows"]) or 1.0
        by_reason = collections.Counter()
        for row in kernel["rows"]:
            for reason in reasons:
                by_reason[reason] += number(row, column[reason])
        print(f"== kernel {index}: {kernel['name'].split('(const')[0]}")
        print(f"   warp instructions executed {total:.0f}; stall samples {sampled:.0f}: " +
              ", ".join(f"{reason[6:]} {100 * count / sampled:.1f}%" for reason, count in by_reason.most_common(5)))
        by_opcode = collections.Counter()
        for row in kernel["rows"]:
            words = row[1].split()
            words = words[1:] if words and words[0].startswith("@") else words  # a predicate guard
            if words:
                by_opcode[words[0].split(".")[0]] += number(row, executed)
        print("   by opcode: " + ", ".join(f"{op} {count:.0f}" for op, count in by_opcode.most_common(top)))
        for row in sorted(kernel["rows"], key=lambda r: -number(r, samples))[:top]:
            print(f"   {number(row, samples):7.0f} samples, executed {number(row, executed):9.0f}  {row[1].strip()[:70]}")


if __name__ == "__main__":
    main()
