#!/usr/bin/env python3
"""Fails when the workspace's declared `rust-version` is older than what one of its dependencies declares it needs:
the declared minimum must be true at least as far as the dependency graph can tell. Reads `cargo metadata`."""
import json
import subprocess
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))[:3]


def main():
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"],
                                     check=True, capture_output=True, text=True).stdout)
    members = set(meta["workspace_members"])
    ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members and p.get("rust_version")}
    if len(ours) != 1:
        sys.exit(f"check-rust-version: workspace crates declare {sorted(ours) or 'no'} rust-version; want one")
    declared = ours.pop()
    needed = [(p["rust_version"], p["name"]) for p in meta["packages"]
              if p["id"] not in members and p.get("rust_version")]
    too_new = sorted((n for n in needed if version(n[0]) > version(declared)), key=lambda n: version(n[0]))
    if too_new:
        names = ", ".join(f"{name} {v}" for v, name in too_new[-5:])
        sys.exit(f"check-rust-version: rust-version {declared} is older than dependencies need ({names})")
    highest = max(needed, key=lambda n: version(n[0]))
    print(f"check-rust-version: rust-version {declared} covers every dependency (highest: {highest[1]} {highest[0]})")


if __name__ == "__main__":
    main()
