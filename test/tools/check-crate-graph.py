#!/usr/bin/env python3
"""Fails when a workspace crate depends (directly or through others, build and normal dependencies) on a crate it
must not: the controller never links the agent binary's crate (they share formats through dr-syncer-wire), and the
small shared crates depend on no binary crate. Cargo itself refuses cycles between crates."""

import json
import subprocess
import sys

# crate -> workspace crates it must never reach
FORBIDDEN = {
    "dr-syncer-controller": {"dr-syncer-agent"},
    "dr-syncer-agent": {"dr-syncer-controller"},
    "dr-syncer-wire": {"dr-syncer-agent", "dr-syncer-controller", "dr-syncer-api"},
    "dr-syncer-api": {"dr-syncer-agent", "dr-syncer-controller", "dr-syncer-wire"},
}


def main():
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1"],
                                     check=True, capture_output=True, text=True).stdout)
    names = {p["id"]: p["name"] for p in meta["packages"]}
    edges = {}
    for node in meta["resolve"]["nodes"]:
        # Dev-dependencies (tests may run the other binary) do not count: only what the crate links when built.
        edges[node["id"]] = [d["pkg"] for d in node["deps"]
                             if any(k["kind"] in (None, "build") for k in d["dep_kinds"])]
    by_name = {names[i]: i for i in edges}
    problems = []
    for crate, forbidden in FORBIDDEN.items():
        seen, stack, parent = set(), [by_name[crate]], {}
        while stack:
            current = stack.pop()
            for dep in edges.get(current, []):
                if dep in seen:
                    continue
                seen.add(dep)
                parent[dep] = current
                stack.append(dep)
        for dep in seen:
            if names[dep] in forbidden:
                path, at = [names[dep]], dep
                while at in parent:
                    at = parent[at]
                    path.append(names[at])
                problems.append(f"{crate} must not depend on {names[dep]}: " + " -> ".join(reversed(path)))
    for p in problems:
        print(f"check-crate-graph: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check-crate-graph: {len(FORBIDDEN)} crates checked, no forbidden dependency")


if __name__ == "__main__":
    main()
