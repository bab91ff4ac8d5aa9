"""sysred against SLICOT and python-control: the accuracy figures behind the test tolerances.

Prints, for the SLICOT benchmark systems and for random systems, the HSV error against SLICOT
AB09AD, the relative H-inf difference between sysred's and AB09AD's reduced models, and the
H-inf norm against AB13DD. Run: ``python benchmarks/sysred_validation.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _systems import (  # noqa: E402
    gap_orders,
    load_slicot,
    random_dense,
    random_diagonal,
    slycot_bt,
    slycot_hinf,
)

import sysred  # noqa: E402

SLICOT = Path(os.environ.get("SYSRED_SLICOT_DIR", ROOT.parent / "shared" / "slicot-benchmarks"))


def hsv_errors(ours, ref):
    big = ref >= 1e-6 * ref[0]
    return np.max(np.abs(ours - ref)) / ref[0], np.max(np.abs(ours - ref)[big] / ref[big])


def main() -> int:
    print("SLICOT benchmarks: sysred (Hammarling, complex Schur) vs AB09AD (equil='N')")
    print(f"{'system':9} {'n':>4} {'max|dHSV|/s1':>13} {'rel(s>=1e-6s1)':>15} "
          f"{'r':>3} {'relHinf(Gr)':>12} {'time s':>7}")  # fmt: skip
    for name in ["building", "pde", "cdplayer", "heat", "iss", "beam"]:
        path = SLICOT / f"{name}.mat"
        if not path.exists():
            print(f"{name:9} missing ({path})")
            continue
        G, _ = load_slicot(path)
        t0 = time.perf_counter()
        hsv = sysred.hankel_singular_values(G)
        elapsed = time.perf_counter() - t0
        _, ref = slycot_bt(G, 1)
        abs_err, rel_err = hsv_errors(hsv, ref)
        r = (gap_orders(hsv, [10, 20, 4]) or [2])[0]
        red = sysred.balanced_truncation(G, order=r).system
        ref_red, _ = slycot_bt(G, r)
        diff = sysred.hinf_norm(red, ref_red) / sysred.hinf_norm(ref_red)
        print(f"{name:9} {G.n:4d} {abs_err:13.1e} {rel_err:15.1e} {r:3d} {diff:12.1e} "
              f"{elapsed:7.2f}")  # fmt: skip

    print("\nRandom systems (10 seeds each): worst over seeds")
    print(f"{'kind':28} {'max|dHSV|/s1':>13} {'rel(s>=1e-6s1)':>15} {'relHinf(Gr)':>12} "
          f"{'|dHinf|/Hinf':>13}")  # fmt: skip
    kinds = [
        ("dense real ct n=30 m=2 p=3", lambda rng: random_dense(rng, 30, 2, 3)),
        ("dense real dt n=30 m=2 p=3", lambda rng: random_dense(rng, 30, 2, 3, discrete=True)),
        ("dense complex ct n=20", lambda rng: random_dense(rng, 20, 2, 2, complex_=True)),
        ("diagonal complex dt n=32 SISO", lambda rng: random_diagonal(rng, 32, 1, 1, True)),
        ("diagonal complex ct n=32 SISO", lambda rng: random_diagonal(rng, 32, 1, 1)),
    ]
    for label, make in kinds:
        worst = np.zeros(4)
        for seed in range(10):
            G = make(np.random.default_rng(seed))
            Gr = sysred.realify(G)
            twice = 2 if G.is_complex else 1
            hsv = sysred.hankel_singular_values(G)
            _, ref = slycot_bt(Gr, 1)
            a, b = hsv_errors(np.repeat(hsv, twice), ref)
            r = (gap_orders(hsv, [G.n // 4, G.n // 3, G.n // 2]) or [1])[0]
            red = sysred.realify(sysred.balanced_truncation(G, order=r).system)
            ref_red, _ = slycot_bt(Gr, twice * r)
            c = sysred.hinf_norm(red, ref_red) / sysred.hinf_norm(ref_red)
            h_ref = slycot_hinf(Gr)
            d = abs(sysred.hinf_norm(G) - h_ref) / h_ref
            worst = np.maximum(worst, [a, b, c, d])
        print(f"{label:28} {worst[0]:13.1e} {worst[1]:15.1e} {worst[2]:12.1e} {worst[3]:13.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
