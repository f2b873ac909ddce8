"""Pure tensor functions of the streaming memories (no state, no Python loops over points).

Shapes: maps are (..., H, W, D) patch grids; points are flattened maps (N, P) with P = s*s*D;
weights are (N,). Distances are computed in float32 whatever the input dtype (fp16 squares of
CLIP features overflow), results come back in the input dtype where they are features.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.functional import adaptive_avg_pool2d


def pool_map(x: torch.Tensor, side: int) -> torch.Tensor:
    """Adaptive average pooling of (..., H, W, D) maps to (..., side, side, D)."""
    *lead, h, w, d = x.shape
    if (h, w) == (side, side):
        return x
    grid = x.reshape(-1, h, w, d).permute(0, 3, 1, 2)  # (B, D, H, W)
    pooled = adaptive_avg_pool2d(grid, side)  # (B, D, s, s)
    return pooled.permute(0, 2, 3, 1).reshape(*lead, side, side, d)  # (..., s, s, D)


def sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, P) x (M, P) -> (N, M), float32, clamped at 0."""
    x32, c32 = x.float(), c.float()
    xx = torch.linalg.vector_norm(x32, dim=-1).square().unsqueeze(1)  # (N, 1)
    cc = torch.linalg.vector_norm(c32, dim=-1).square().unsqueeze(0)  # (1, M)
    return (xx + cc - 2.0 * x32 @ c32.T).clamp_min_(0.0)  # (N, M)


def self_sq_dists(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared distances of the rows of x (N, P) -> (N, N) float32, from one Gram."""
    x32 = x.float()
    gram = x32 @ x32.T  # (N, N)
    sq = gram.diagonal()  # (N,)
    return (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min_(0.0)  # (N, N)


def merge_costs(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Ward cost of merging each pair: w_i w_j / (w_i + w_j) ||x_i - x_j||^2, (N, N), diag inf."""
    w32 = w.float()
    pair_w = w32[:, None] * w32[None, :] / (w32[:, None] + w32[None, :])  # (N, N)
    cost = pair_w * self_sq_dists(x)  # (N, N)
    return cost.fill_diagonal_(math.inf)


def best_merge(x: torch.Tensor, w: torch.Tensor) -> tuple[int, int]:
    """The pair (i, j), i < j, of points x (N, P) with weights w (N,) whose merge costs least.

    With K+1 weighted points and K clusters, merging this pair is the exact optimum of weighted
    k-means: every other point stays a singleton (cost 0).
    """
    return ward_pair(self_sq_dists(x), w)


def ward_pair(dist: torch.Tensor, w: torch.Tensor) -> tuple[int, int]:
    """best_merge from cached squared distances dist (N, N); ties: first in row-major order."""
    n = dist.shape[0]
    w32 = w.float()
    cost = w32[:, None] * w32[None, :] / (w32[:, None] + w32[None, :]) * dist  # (N, N)
    upper = torch.ones(n, n, dtype=torch.bool, device=dist.device).triu_(1)
    flat = int(torch.argmin(cost.masked_fill(~upper, math.inf)).item())
    return flat // n, flat % n


def weighted_merge(xi: torch.Tensor, xj: torch.Tensor, wi: float, wj: float) -> torch.Tensor:
    """Weighted mean of two points (P,) computed in float32, returned in their dtype."""
    merged = (wi * xi.float() + wj * xj.float()) / (wi + wj)  # (P,)
    return merged.to(xi.dtype)


def farthest_point_init(x: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """Deterministic k-means start: the heaviest point (first on ties), then farthest points.

    Loops over the k seeds (not over points); each step is one vectorised distance update.
    """
    d = self_sq_dists(x)  # (N, N)
    first = int(torch.argmax(w.float()).item())
    chosen = [first]
    nearest = d[first].clone()  # (N,) distance to the closest seed so far
    nearest[first] = -1.0  # never pick a seed twice, even among duplicates
    for _ in range(1, k):
        nxt = int(torch.argmax(nearest).item())
        chosen.append(nxt)
        nearest = torch.minimum(nearest, d[nxt])
        nearest[chosen] = -1.0
    return torch.tensor(chosen, dtype=torch.long, device=x.device)


def random_init(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Released-code start: k distinct points drawn uniformly (CPU generator, seeded)."""
    return torch.randperm(n, generator=generator)[:k]


def scatter_mean(x: torch.Tensor, w: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Weighted means per label: (N, P), (N,), (N,) -> (K, P) float32 (empty clusters: 0)."""
    w32 = w.float()
    sums = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device)
    sums.index_add_(0, labels, x.float() * w32[:, None])  # (K, P)
    mass = torch.zeros(k, dtype=torch.float32, device=x.device).index_add_(0, labels, w32)
    return sums / mass.clamp_min(1e-12)[:, None]  # (K, P)


def lloyd_kmeans(
    x: torch.Tensor, w: torch.Tensor, k: int, iters: int, tol: float, init: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted Lloyd k-means from the seeds ``init`` (K,) -> (centroids (K, P), labels (N,)).

    An empty cluster keeps its previous centroid (it holds no weight). Stops after ``iters``
    iterations or when the summed centroid shift is below ``tol``. Centroids are float32.
    """
    cent = x[init].float()  # (K, P)
    labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(iters):
        labels = torch.argmin(sq_dists(x, cent), dim=1)  # (N,)
        mass = torch.zeros(k, device=x.device).index_add_(0, labels, w.float())  # (K,)
        new = torch.where(mass[:, None] > 0, scatter_mean(x, w, labels, k), cent)  # (K, P)
        shift = float((new - cent).norm(dim=1).sum().item())
        cent = new
        if shift < tol:
            break
    labels = torch.argmin(sq_dists(x, cent), dim=1)
    return cent, labels


def semantic_attention(
    m: torch.Tensor,
    e: torch.Tensor,
    alpha: float,
    q: nn.Module | None = None,
    k: nn.Module | None = None,
) -> torch.Tensor:
    """M <- (1 - a) M + a softmax(q(M) k(E)^T / sqrt(d)) E, for M (S, D) and E (T, D).

    Without q/k (the parameter-free variant) q and k are the identity: a plain scaled
    dot product on the features themselves (d = D). With a single new token (T = 1, the paper's
    1x1 abstract slots) the softmax is 1 and the update is an exponential moving average.
    """
    qm = _project(q, m)  # (S, d)
    ke = _project(k, e)  # (T, d)
    attn = torch.softmax(qm @ ke.T / math.sqrt(qm.shape[-1]), dim=-1)  # (S, T)
    update = attn @ e.float()  # (S, D)
    return ((1.0 - alpha) * m.float() + alpha * update).to(m.dtype)  # (S, D)


def _project(proj: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    if proj is None:
        return x.float()
    param = next(proj.parameters(), None)
    xin = x if param is None else x.to(device=param.device, dtype=param.dtype)
    with torch.no_grad():
        return proj(xin).to(device=x.device, dtype=torch.float32)


def largest(w: torch.Tensor, r: int) -> torch.Tensor:
    """Indices (R,) of the r largest weights, largest first, ties by lower index (stable)."""
    return torch.sort(w, descending=True, stable=True).indices[:r]


def nearest_frames(buffer: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Paper retrieval: for each centroid (R, P), the index of the nearest buffer row (N, P)."""
    return torch.argmin(sq_dists(centroids, buffer), dim=1)  # (R,)


def released_frames(cluster_ids: torch.Tensor, n_buffer: int) -> torch.Tensor:
    """Released-code retrieval: buffer frames indexed by cluster id (early frames), clamped."""
    return cluster_ids.clamp(max=n_buffer - 1)
