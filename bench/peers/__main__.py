"""`python -m bench.peers naive|table|quix`: run one peer with the MSGSTATE_* settings."""

from __future__ import annotations

import sys

from msgstate.workers.config import Settings

PEERS = ("naive", "table", "quix")


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in PEERS:
        sys.exit(f"usage: python -m bench.peers {'|'.join(PEERS)}")
    settings = Settings.from_env()
    if sys.argv[1] == "naive":
        from msgstate.bench.peers import naive as peer
    elif sys.argv[1] == "table":
        from msgstate.bench.peers import table as peer  # type: ignore[no-redef]
    else:
        from msgstate.bench.peers import quix as peer  # type: ignore[no-redef]
    peer.main(settings)


if __name__ == "__main__":
    main()
