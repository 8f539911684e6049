"""Blocks that decide about running branches: which to abandon, and how deep each decodes per step.

A prune method `prune_*(obs, st, step, winner, alive)` returns the ids of branches to abandon (the
skeleton prunes them and drops them from `alive` before the next prune block looks); the depth method
`segments(st, step, winner, b)` returns how many segments branch `b` decodes this step (0: it waits;
if every branch would wait, all decode one segment).
"""

from __future__ import annotations

from .knobs import Block

__all__ = ["DEPTH_BLOCKS", "PRUNE_BLOCKS"]

PRUNE_BLOCKS = (
    Block("patience_pruning", "prune", "patience pruning", "cmc, parallel_probe",
          ("warm_up", "abandon_patience", "keep_alive"), '''
    def prune_patience(self, obs, st, step, winner, alive):
        """Patience pruning (cmc, parallel_probe): after warm-up, a branch whose latest answer has disagreed
        with the winner for `abandon_patience` steps in a row is abandoned, the most deviant first, never
        leaving fewer than `keep_alive` branches running."""
        k, off = self.knobs, st["off"]
        if step < k["warm_up"] or winner is None:
            return []
        for b in alive:
            off[b.id] = off.get(b.id, 0) + 1 if b.latest != winner else 0
        deviant = sorted((b for b in alive if off[b.id] >= k["abandon_patience"]), key=lambda b: -off[b.id])
        return [b.id for b in deviant[:max(0, len(alive) - k["keep_alive"])]]
''', state=(("off", "{}"),)),
    Block("overlong_pruning", "prune", "overlong pruning", "new", ("cap_ratio", "cap_keep"), '''
    def prune_overlong(self, obs, st, step, winner, alive):
        """Overlong pruning: once a branch has finished, a running branch already `cap_ratio` times deeper
        than the first finished one is abandoned, deepest first (long traces are the ones least often
        right, and the costliest to wait for), never leaving fewer than `cap_keep` branches running."""
        if not obs.completed:
            return []
        limit = self.knobs["cap_ratio"] * obs.branches[obs.completed[0]].depth
        over = sorted((b for b in alive if b.depth >= limit), key=lambda b: -b.depth)
        return [b.id for b in over[:max(0, len(alive) - self.knobs["cap_keep"])]]
'''),
)

DEPTH_BLOCKS = (
    Block("lockstep_depth", "depth", "lockstep decoding", "parallel_probe", (), '''
    def segments(self, st, step, winner, b):
        """Lockstep decoding (parallel_probe): every running branch decodes one segment per step, so the
        shortest traces, the most often right, finish first."""
        return 1
'''),
    Block("alignment_burst", "depth", "alignment-aware depth", "cmc", ("warm_up", "burst_aligned"), '''
    def segments(self, st, step, winner, b):
        """Alignment-aware depth (cmc): after warm-up, a branch whose latest answer agrees with the winner
        decodes `burst_aligned` segments per step, so a confirming vote arrives sooner."""
        k = self.knobs
        return k["burst_aligned"] if step >= k["warm_up"] and b.latest == winner else 1
'''),
    Block("leader_focus", "depth", "leader focus", "new", ("warm_up", "focus_burst"), '''
    def segments(self, st, step, winner, b):
        """Leader focus: after warm-up, only branches agreeing with the winner decode (`focus_burst`
        segments a step) while the others wait, so confirming the leader costs no tokens elsewhere; when
        no branch agrees, every branch decodes one segment."""
        k = self.knobs
        if winner is None or step < k["warm_up"]:
            return 1
        return k["focus_burst"] if b.latest == winner else 0
'''),
)
