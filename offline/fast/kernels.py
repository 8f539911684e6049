"""Replay kernels of the built-in controllers: a whole chunk of episodes (seeds × questions) per call.

Each kernel replays exactly what the controller would do through `ReplayEnv` (same branch order,
costs, budget checks, vote tie-breaks, float operations in the same order), but on integer arrays:
answers are vocabulary codes, a branch is a row index, nothing is allocated per step. Each
`*_episode` function follows its controller in controllers/builtins/ step by step.

All kernels live in this one file on purpose: numba's on-disk cache is checked against the source
file of each compiled function only, so helpers kept in another file could change under a stale
cache. Arguments (arrays under numba, lists in plain Python):

* ``qlo[q]`` first row of question q; ``qs`` the questions, ``orders[s]`` the branch order of the
  s-th seed (rows ``qlo[q] + orders[s][i]``); ``poff``/``pcode``/``tok``/``fin`` the store arrays;
* ``ip``/``fp`` integer / float parameters (``ip[0]`` Δ, ``ip[1]`` κ_probe, ``ip[2]`` budget or −1);
* scratch: ``counts``/``seen`` (vocabulary-sized, zero between episodes), per-branch buffers;
* ``out``: six integers per episode: answer code (−1: none), tokens, branches, probes, steps,
  budget exhausted.
"""

from __future__ import annotations

from ._jit import njit

NONE = -1
N_OUT = 6

# --- votes ---------------------------------------------------------------------------------


@njit(inline=True)
def top_two(buf, n, counts, seen):
    """(winner, v1, v2) over buf[:n], ties to the first seen; leaves `counts` zeroed."""
    k = 0
    for i in range(n):
        c = buf[i]
        if counts[c] == 0:
            seen[k] = c
            k += 1
        counts[c] += 1
    winner, v1, v2 = NONE, 0, 0
    for j in range(k):
        c = seen[j]
        m = counts[c]
        counts[c] = 0
        if m > v1:
            winner, v1, v2 = c, m, v1
        elif m > v2:
            v2 = m
    return winner, v1, v2


@njit(inline=True)
def pool_top(pcounts, pseen, nseen):
    """(winner, v1, v2) of the completed pool kept incrementally in pcounts/pseen (first-seen order)."""
    winner, v1, v2 = NONE, 0, 0
    for j in range(nseen):
        c = pseen[j]
        m = pcounts[c]
        if m > v1:
            winner, v1, v2 = c, m, v1
        elif m > v2:
            v2 = m
    return winner, v1, v2


@njit(inline=True)
def clear_pool(pcounts, pseen, nseen):
    for j in range(nseen):
        pcounts[pseen[j]] = 0


# --- branch state for probing kernels ------------------------------------------------------
# Episode counters (tokens spent, probes, branches opened, completed pool size, distinct pool
# answers) stay local scalars of the episode function: kept in an array they cost a memory round
# trip each, which made the probing kernels 3x slower.


@njit(inline=True)
def open_branch(i, base, order, rows, depth, nprb, done, pruned, latest, aux, aux2, poff):
    """Branch i takes the next row in the seed's order (state only; its first segment is decoded apart)."""
    r = base + order[i]
    rows[i] = r
    depth[i] = 0
    nprb[i] = poff[r + 1] - poff[r]
    done[i] = 0
    pruned[i] = 0
    latest[i] = NONE
    aux[i] = 0
    aux2[i] = 0


@njit(inline=True)
def advance(i, rows, depth, nprb, done, latest, poff, pcode, tok, fin, seg, kappa):
    """Decode one probed segment of branch i → (cost, 1 if a probe was revealed, final answer or NONE)."""
    r = rows[i]
    d = depth[i]
    n = nprb[i]
    depth[i] = d + 1
    if d < n:
        latest[i] = pcode[poff[r] + d]
        return seg + kappa, 1, NONE
    a = fin[r]
    latest[i] = a
    done[i] = 1
    cost = tok[r] - seg * n
    return (cost if cost > 0 else 0), 0, a


@njit(inline=True)
def pool_add(a, pool, npool, pcounts, pseen, nseen):
    """Append a final answer to the completed pool → (pool size, distinct answers)."""
    pool[npool] = a
    if pcounts[a] == 0:
        pseen[nseen] = a
        nseen += 1
    pcounts[a] += 1
    return npool + 1, nseen


@njit(inline=True)
def fallback(npool, nseen, nb, pruned, latest, pcounts, pseen, buf, counts, seen):
    """Budget ran out: majority of completed answers, else of the latest answers of unpruned branches."""
    if npool > 0:
        return pool_top(pcounts, pseen, nseen)[0]
    k = 0
    for i in range(nb):
        if pruned[i] == 0 and latest[i] != NONE:
            buf[k] = latest[i]
            k += 1
    return top_two(buf, k, counts, seen)[0]


@njit(inline=True)
def sort_desc(idx, n, key):
    """Stable in-place insertion sort of idx[:n] by key[idx] descending (ties keep their order)."""
    for j in range(1, n):
        x = idx[j]
        kx = key[x]
        m = j - 1
        while m >= 0 and key[idx[m]] < kx:
            idx[m + 1] = idx[m]
            m -= 1
        idx[m + 1] = x


@njit(inline=True)
def emit(out, e, ans, tokens, branches, probes, steps, exhausted):
    o = e * N_OUT
    out[o] = ans
    out[o + 1] = tokens
    out[o + 2] = branches
    out[o + 3] = probes
    out[o + 4] = steps
    out[o + 5] = exhausted


# --- full-read controllers: sc, esc, asc -------------------------------------------------------


@njit
def _sc_episode(base, order, tok, fin, budget, n, buf, counts, seen):
    spent = 0
    for i in range(n):
        if budget >= 0 and spent >= budget:
            return top_two(buf, i, counts, seen)[0], spent, i + 1, 1, 1
        r = base + order[i]
        spent += tok[r]
        buf[i] = fin[r]
    return top_two(buf, n, counts, seen)[0], spent, n, 2, 0


@njit
def sc_kernel(qlo, qs, orders, tok, fin, ip, buf, counts, seen, out):
    budget, n = ip[2], ip[3]
    e = 0
    for s in range(len(orders)):
        order = orders[s]
        for j in range(len(qs)):
            ans, spent, nb, steps, ex = _sc_episode(qlo[qs[j]], order, tok, fin, budget, n, buf, counts, seen)
            emit(out, e, ans, spent, nb, 0, steps, ex)
            e += 1


@njit
def _esc_episode(base, order, tok, fin, budget, n, window, buf, counts, seen):
    spent, b, batches = 0, 0, 0
    while b < n:
        k = min(window, n - b)
        for j in range(b, b + k):
            if budget >= 0 and spent >= budget:
                return top_two(buf, j, counts, seen)[0], spent, j + 1, batches + 1, 1
            r = base + order[j]
            spent += tok[r]
            buf[j] = fin[r]
        b += k
        batches += 1
        if b >= window:
            first = buf[b - window]
            same = True
            for j in range(b - window + 1, b):
                if buf[j] != first:
                    same = False
                    break
            if same:
                return first, spent, b, batches + 1, 0
    return top_two(buf, n, counts, seen)[0], spent, n, batches + 1, 0


@njit
def esc_kernel(qlo, qs, orders, tok, fin, ip, buf, counts, seen, out):
    budget, n, window = ip[2], ip[3], ip[4]
    e = 0
    for s in range(len(orders)):
        order = orders[s]
        for j in range(len(qs)):
            ans, spent, nb, steps, ex = _esc_episode(qlo[qs[j]], order, tok, fin, budget, n, window,
                                                     buf, counts, seen)
            emit(out, e, ans, spent, nb, 0, steps, ex)
            e += 1


@njit
def _asc_episode(base, order, tok, fin, budget, n, threshold, conf, width, pcounts, pseen):
    spent, nseen = 0, 0
    for i in range(n):
        if budget >= 0 and spent >= budget:
            ans = pool_top(pcounts, pseen, nseen)[0]
            clear_pool(pcounts, pseen, nseen)
            return ans, spent, i + 1, i + 1, 1
        r = base + order[i]
        spent += tok[r]
        a = fin[r]
        if pcounts[a] == 0:
            pseen[nseen] = a
            nseen += 1
        pcounts[a] += 1
        if i >= 1:
            leader, v1, v2 = pool_top(pcounts, pseen, nseen)
            if conf[v1 * width + v2] > threshold:
                clear_pool(pcounts, pseen, nseen)
                return leader, spent, i + 1, i + 2, 0
    ans = pool_top(pcounts, pseen, nseen)[0]
    clear_pool(pcounts, pseen, nseen)
    return ans, spent, n, n + 1, 0


@njit
def asc_kernel(qlo, qs, orders, tok, fin, ip, fp, conf, counts, seen, out):
    budget, n, width, threshold = ip[2], ip[3], ip[4], fp[0]
    e = 0
    for s in range(len(orders)):
        order = orders[s]
        for j in range(len(qs)):
            ans, spent, nb, steps, ex = _asc_episode(qlo[qs[j]], order, tok, fin, budget, n, threshold,
                                                     conf, width, counts, seen)
            emit(out, e, ans, spent, nb, 0, steps, ex)
            e += 1


# --- probing controllers: parallel_probe, cmc --------------------------------------------------


@njit
def _pp_episode(base, order, nbranches, br, pool, buf, counts, seen, pcounts, pseen, poff, pcode, tok, fin, ip):
    seg, kappa, budget = ip[0], ip[1], ip[2]
    n, stable_for, patience, warm_up, max_steps = ip[3], ip[4], ip[5], ip[6], ip[7]
    rows, depth, nprb, done, pruned, latest, off, doom = br[0], br[1], br[2], br[3], br[4], br[5], br[6], br[7]
    spent, probes, nb, npool, nseen = 0, 0, 0, 0, 0
    for i in range(min(n, nbranches)):  # step 0: open all, each opening is its first probe
        open_branch(i, base, order, rows, depth, nprb, done, pruned, latest, off, doom, poff)
        nb = i + 1
        if 0 <= budget <= spent:
            ans = fallback(npool, nseen, nb, pruned, latest, pcounts, pseen, buf, counts, seen)
            return ans, spent, nb, probes, 1, 1, nseen
        cost, probed, a = advance(i, rows, depth, nprb, done, latest, poff, pcode, tok, fin, seg, kappa)
        spent += cost
        probes += probed
        if a != NONE:
            npool, nseen = pool_add(a, pool, npool, pcounts, pseen, nseen)
    steps, prev, winner, stable = 1, NONE, NONE, 0
    for step in range(max_steps):
        # the batch: prune last step's doomed, probe every running branch (in id order); the
        # latest answers of the unpruned branches are gathered for the vote on the way
        k = 0
        for i in range(nb):
            if doom[i] == 1:
                pruned[i] = 1
                doom[i] = 0
                continue
            if pruned[i] == 1:
                continue
            if done[i] == 0:
                if 0 <= budget <= spent:
                    for j in range(i + 1, nb):  # the batch's prunes all precede its probes
                        if doom[j] == 1:
                            pruned[j] = 1
                            doom[j] = 0
                    ans = fallback(npool, nseen, nb, pruned, latest, pcounts, pseen, buf, counts, seen)
                    return ans, spent, nb, probes, steps + 1, 1, nseen
                cost, probed, a = advance(i, rows, depth, nprb, done, latest, poff, pcode, tok, fin, seg, kappa)
                spent += cost
                probes += probed
                if a != NONE:
                    npool, nseen = pool_add(a, pool, npool, pcounts, pseen, nseen)
            buf[k] = latest[i]
            k += 1
        steps += 1
        winner = top_two(buf, k, counts, seen)[0]
        live = False  # some branch still running and not doomed
        if step >= warm_up and k > 1:
            any_doom = False
            for i in range(nb):
                if pruned[i] == 0 and done[i] == 0:
                    off[i] = off[i] + 1 if latest[i] != winner else 0
                    if off[i] >= patience:
                        doom[i] = 1
                        any_doom = True
                    else:
                        live = True
            if any_doom:
                k = 0
                for i in range(nb):
                    if pruned[i] == 0 and doom[i] == 0:
                        buf[k] = latest[i]
                        k += 1
                if k == 0:
                    return (prev if prev != NONE else winner), spent, nb, probes, steps + 1, 0, nseen
                winner = top_two(buf, k, counts, seen)[0]
        else:
            for i in range(nb):
                if done[i] == 0 and pruned[i] == 0:
                    live = True
                    break
        stable = stable + 1 if winner == prev else 0
        prev = winner
        if stable >= stable_for or not live:
            return winner, spent, nb, probes, steps + 1, 0, nseen
    return winner, spent, nb, probes, steps + 1, 0, nseen


@njit
def pp_kernel(qlo, qb, qs, orders, poff, pcode, tok, fin, ip, br, pool, buf, counts, seen, pcounts, pseen, out):
    e = 0
    for s in range(len(orders)):
        order = orders[s]
        for j in range(len(qs)):
            q = qs[j]
            ans, spent, nb, probes, steps, ex, nseen = _pp_episode(
                qlo[q], order, qb[q], br, pool, buf, counts, seen, pcounts, pseen, poff, pcode, tok, fin, ip)
            emit(out, e, ans, spent, nb, probes, steps, ex)
            clear_pool(pcounts, pseen, nseen)
            e += 1


@njit
def _cmc_episode(base, order, nbranches, br, pool, buf, counts, seen, pcounts, pseen, alive, dev, hist,
                 poff, pcode, tok, fin, ip, fp, conf, width):
    seg, kappa, budget = ip[0], ip[1], ip[2]
    n_init, max_branches, warm_up, patience, t_ema = ip[3], ip[4], ip[5], ip[6], ip[7]
    burst, widen, min_complete, max_steps = ip[8], ip[9], ip[10], ip[11]
    keep, alpha, thresh, slack, trend = fp[0], fp[1], fp[2], fp[3], fp[4]
    rows, depth, nprb, done, pruned, latest, dis, spare = br[0], br[1], br[2], br[3], br[4], br[5], br[6], br[7]
    spent, probes, nb, npool, nseen, steps = 0, 0, 0, 0, 0, 0
    first = min(n_init, nbranches)
    for i in range(first):
        open_branch(i, base, order, rows, depth, nprb, done, pruned, latest, dis, spare, poff)
        nb = i + 1
        if 0 <= budget <= spent:
            ans = fallback(npool, nseen, nb, pruned, latest, pcounts, pseen, buf, counts, seen)
            return ans, spent, nb, probes, 1, 1, nseen
        cost, probed, a = advance(i, rows, depth, nprb, done, latest, poff, pcode, tok, fin, seg, kappa)
        spent += cost
        probes += probed
        if a != NONE:
            npool, nseen = pool_add(a, pool, npool, pcounts, pseen, nseen)
    if first > 0:
        steps = 1
    ema, kept, newest = 0.0, 0, -1
    half = max(1, warm_up // 2)
    for step in range(max_steps):
        # 1-2: vote confidence of the completed pool, smoothed; history is a ring of t_ema values
        winner, v1, v2 = pool_top(pcounts, pseen, nseen)
        c = conf[v1 * width + v2] if npool > 0 else 0.0
        ema = keep * ema + alpha * c
        newest = 0 if newest + 1 == t_ema else newest + 1
        hist[newest] = ema
        if kept < t_ema:
            kept += 1
        na = 0
        for i in range(nb):
            if done[i] == 0 and pruned[i] == 0:
                alive[na] = i
                na += 1
        # 3: abandon branches that keep disagreeing, most deviant first, keeping two alive
        n_abandon = 0
        if step >= warm_up and winner != NONE:
            nd = 0
            for j in range(na):
                i = alive[j]
                dis[i] = dis[i] + 1 if latest[i] != winner else 0
                if dis[i] >= patience:
                    dev[nd] = i
                    nd += 1
            n_abandon = min(nd, max(0, na - 2))
            if n_abandon > 0:
                sort_desc(dev, nd, dis)
                for j in range(n_abandon):
                    pruned[dev[j]] = 1
                k = 0
                for j in range(na):
                    if pruned[alive[j]] == 0:
                        alive[k] = alive[j]
                        k += 1
                na = k
        # 4: probe the alive branches, most-probed first; bursts for those agreeing with the winner
        sort_desc(alive, na, depth)
        if n_abandon > 0 or na > 0:
            for j in range(na):
                i = alive[j]
                segments = burst if step >= warm_up and latest[i] == winner else 1
                for _ in range(segments):
                    if done[i] == 1:
                        break
                    if 0 <= budget <= spent:
                        ans = fallback(npool, nseen, nb, pruned, latest, pcounts, pseen, buf, counts, seen)
                        return ans, spent, nb, probes, steps + 1, 1, nseen
                    cost, probed, a = advance(i, rows, depth, nprb, done, latest, poff, pcode, tok, fin, seg, kappa)
                    spent += cost
                    probes += probed
                    if a != NONE:
                        npool, nseen = pool_add(a, pool, npool, pcounts, pseen, nseen)
            steps += 1
        # 5: second EMA update replaces the newest kept value
        winner, v1, v2 = pool_top(pcounts, pseen, nseen)
        c = conf[v1 * width + v2] if npool > 0 else 0.0
        ema = keep * ema + alpha * c
        hist[newest] = ema
        delta = 0.0
        if kept >= 2:
            oldest = 0 if kept < t_ema or newest + 1 == t_ema else newest + 1
            delta = ema - hist[oldest]
        # 6-7: stop when confident and not falling, or when nothing is left to decode
        if step >= warm_up and npool >= min_complete and ema >= thresh and delta >= -slack:
            return winner, spent, nb, probes, steps + 1, 0, nseen
        live = False
        for i in range(nb):
            if done[i] == 0 and pruned[i] == 0:
                live = True
                break
        if not live:
            break
        # 8: widen while confidence is not rising and still below threshold
        if delta <= trend and step >= half and ema < thresh:
            k = min(widen, min(max_branches - nb, nbranches - nb))
            if k > 0:
                for i in range(nb, nb + k):
                    open_branch(i, base, order, rows, depth, nprb, done, pruned, latest, dis, spare, poff)
                    nb = i + 1
                    if 0 <= budget <= spent:
                        ans = fallback(npool, nseen, nb, pruned, latest, pcounts, pseen, buf, counts, seen)
                        return ans, spent, nb, probes, steps + 1, 1, nseen
                    cost, probed, a = advance(i, rows, depth, nprb, done, latest, poff, pcode, tok, fin, seg, kappa)
                    spent += cost
                    probes += probed
                    if a != NONE:
                        npool, nseen = pool_add(a, pool, npool, pcounts, pseen, nseen)
                steps += 1
    if npool > 0:
        return pool_top(pcounts, pseen, nseen)[0], spent, nb, probes, steps + 1, 0, nseen
    k = 0
    for i in range(nb):
        if pruned[i] == 0:
            buf[k] = latest[i]
            k += 1
    return top_two(buf, k, counts, seen)[0], spent, nb, probes, steps + 1, 0, nseen


@njit
def cmc_kernel(qlo, qb, qs, orders, poff, pcode, tok, fin, ip, fp, conf, width, br, pool, buf, alive, dev, hist,
               counts, seen, pcounts, pseen, out):
    e = 0
    for s in range(len(orders)):
        order = orders[s]
        for j in range(len(qs)):
            q = qs[j]
            ans, spent, nb, probes, steps, ex, nseen = _cmc_episode(
                qlo[q], order, qb[q], br, pool, buf, counts, seen, pcounts, pseen, alive, dev, hist, poff, pcode,
                tok, fin, ip, fp, conf, width)
            emit(out, e, ans, spent, nb, probes, steps, ex)
            clear_pool(pcounts, pseen, nseen)
            e += 1
