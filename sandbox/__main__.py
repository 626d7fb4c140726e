"""``python -m sandbox [--host H] [--port P] [--no-flood-limits] [--state-dir DIR]``
or ``python -m sandbox chat``."""

from __future__ import annotations

import argparse

from sandbox.server import SandboxConfig, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--no-flood-limits", action="store_true")
    parser.add_argument(
        "--state-dir", help="keep state across restarts in DIR/sandbox.sqlite3 (default: memory)"
    )
    chat = sub.add_parser("chat", help="talk to the bot from this terminal")
    chat.add_argument("--url", default="http://127.0.0.1:8081")
    chat.add_argument("--user-id", type=int, default=1001)
    chat.add_argument("--name", default="You")
    chat.add_argument("--lang", default="en")
    args = parser.parse_args(argv)
    if args.command == "chat":
        from sandbox.chat import run_chat

        run_chat(args.url, args.user_id, first_name=args.name, language_code=args.lang)
        return
    config = SandboxConfig(flood_limits=not args.no_flood_limits)
    run(args.host, args.port, config, state_dir=args.state_dir)


if __name__ == "__main__":
    main()
