"""The first requests of a process, made by many threads at once, validate against built models.

pydantic builds deferred models on first use, and that build is not thread-safe
(pydantic/pydantic#13419): `build_request` builds every model of unillm.types once,
under a lock, before it validates anything.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_the_first_request_builds_every_model_under_one_lock() -> None:
    code = textwrap.dedent("""
        import unillm.types as t
        from pydantic import BaseModel
        models = [v for v in vars(t).values() if isinstance(v, type) and issubclass(v, BaseModel)
                  and v.__module__ == t.__name__ and not v.__name__.startswith("_")]
        assert models and not any(m.__pydantic_complete__ for m in models)  # deferred at import
        t.build_request("gpt-4o", [{"role": "user", "content": "hi"}], {})
        assert all(m.__pydantic_complete__ for m in models), [m.__name__ for m in models
                                                              if not m.__pydantic_complete__]
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_threads_making_a_processs_first_requests_at_once_all_succeed() -> None:
    code = textwrap.dedent("""
        import threading
        import unillm.types as t
        barrier, failures = threading.Barrier(32), []
        def first_request():
            barrier.wait()
            try:
                t.build_request("gpt-4o", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                {"tools": [{"type": "function", "function": {"name": "f"}}]})
            except Exception as exc:
                failures.append(repr(exc))
        threads = [threading.Thread(target=first_request) for _ in range(32)]
        for th in threads: th.start()
        for th in threads: th.join()
        assert not failures, failures[:3]
    """)
    for _ in range(3):  # a fresh process each time: only a process's first requests race
        subprocess.run([sys.executable, "-c", code], check=True)
