"""What the nodes of a cluster run hand each other, each made once (core.cluster.driver decides who makes what here; the
object refs it keeps are opaque to this module, so this needs no Ray)."""

from __future__ import annotations

import threading
from typing import Callable


class Shared:
    """What nodes hand each other, each made once: the reference of a hardware kind (by the first of its nodes to
    ask) and each quantized model per cache key (by the first node to reach it; the others run other methods
    meanwhile and take it from Ray's object store). Something that failed to be made is made again by the next node
    that needs it."""

    PENDING = object()

    def __init__(self):
        self.cond = threading.Condition()
        self.references: dict[str, object] = {}  # hardware kind → object ref of the reference files, or None
        self.models: dict[str, object] = {}  # cache key → object ref of ("artifact", tar)
        self.making: set[str] = set()
        self.reference_nodes: dict[str, str] = {}  # hardware kind → the node whose reference the kind uses

    def reference(self, kind: str, node: str, compute: Callable[[], object]):
        with self.cond:
            while self.references.get(kind) is self.PENDING:
                self.cond.wait()
            if kind in self.references:
                return self.references[kind]
            self.references[kind] = self.PENDING
        ref = None
        try:
            ref = compute()
        finally:
            with self.cond:
                self.references[kind] = ref
                if ref is not None:
                    self.reference_nodes[kind] = node
                self.cond.notify_all()
        return ref

    def next(self, keys: dict[str, tuple[str, bool]], methods: list[str], cancel: threading.Event) -> tuple[str, str]:
        """The next of `methods` for a node and its part: "make" (its quantized model is for the others too), "take"
        (made elsewhere already) or "own" (nothing to share). A method another node is making now waits its turn."""
        with self.cond:
            while True:
                for method in methods:
                    key, here = keys.get(method, ("", True))
                    if here:
                        return method, "own"
                    if key in self.models:
                        return method, "take"
                    if key not in self.making:
                        self.making.add(key)
                        return method, "make"
                if cancel.is_set():
                    return methods[0], "own"
                self.cond.wait(timeout=1.0)

    def made(self, key: str, ref) -> None:
        with self.cond:
            self.making.discard(key)
            if ref is not None:
                self.models[key] = ref
            self.cond.notify_all()


def shared_keys(keys: dict[str, dict[str, tuple[str, bool]]]) -> dict[str, dict[str, tuple[str, bool]]]:
    """The keys worth sharing: a model that fewer than two nodes lack is no one else's business (marked as held)."""
    lacking: dict[str, int] = {}
    for per_node in keys.values():
        for key, here in per_node.values():
            lacking[key] = lacking.get(key, 0) + (not here)
    return {node: {m: (key, here or lacking[key] < 2) for m, (key, here) in per_node.items()}
            for node, per_node in keys.items()}
