"""Malformed input and empty systems against sysred's public functions: what comes back.

Every case expects either a *defined result* (a system without states, inputs or outputs:
HSVs, norms, reductions, conversions) or a *specific* ``sysred.SysredError`` subclass. Outcomes:

* ``ok``      -- the defined (and correct) result, or the expected error class;
* ``generic`` -- a ``SysredError``, but not the specific class expected;
* ``raw``     -- a non-sysred exception (numpy/scipy error, AttributeError, OverflowError...);
* ``silent``  -- no error where one was due, or a wrong result.

Run: ``python benchmarks/sysred_bad_input.py`` (``--out -`` prints only); the table goes to
``benchmarks/results/sysred_bad_input.txt``. The tests of these cases are
``tests/test_sysred_bad_input.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import control  # noqa: E402
import numpy as np  # noqa: E402

import sysred  # noqa: E402

Z = np.zeros


def _empty():
    return {
        "n0-ct": sysred.StateSpace(Z((0, 0)), Z((0, 2)), Z((3, 0)), np.ones((3, 2))),
        "n0-dt": sysred.StateSpace(Z((0, 0)), Z((0, 2)), Z((3, 0)), np.ones((3, 2)), dt=1.0),
        "m0-ct": sysred.StateSpace(-np.eye(2), Z((2, 0)), np.ones((1, 2)), Z((1, 0))),
        "p0-dt": sysred.StateSpace(0.5 * np.eye(2), np.ones((2, 1)), Z((0, 2)), Z((0, 1)), 1.0),
        "diag-n0": sysred.DiagonalStateSpace(Z(0), Z((0, 1)), Z((1, 0)), [[2.0]]),
        "batch-n0": sysred.StateSpace(Z((4, 0, 0)), Z((4, 0, 1)), Z((4, 1, 0)), np.ones((4, 1, 1))),
    }


def _dnorm(G):
    D = G.D.reshape((int(np.prod(G.batch_shape)),) + G.D.shape[-2:])
    return np.array([np.linalg.norm(d, 2) if d.size else 0.0 for d in D]).reshape(G.batch_shape)


def _defined_cases():
    """(name, call, check(result) -> bool) for systems without states, inputs or outputs."""
    cases = []
    for name, G in _empty().items():
        hsv_ok = lambda h, G=G: np.shape(h) == G.batch_shape + (G.n,) and not np.any(h)  # noqa: E731
        cases += [
            (f"{name} HSVs", lambda G=G: sysred.hankel_singular_values(G), hsv_ok),
            (f"{name} gramian_factors", lambda G=G: sysred.gramian_factors(G)[0],
             lambda R, G=G: R.shape == G.batch_shape + (G.n, G.n)),
            (f"{name} gramians", lambda G=G: sysred.gramians(G)[0],
             lambda P, G=G: P.shape == G.batch_shape + (G.n, G.n)),
            (f"{name} hinf_norm", lambda G=G: sysred.hinf_norm(G),
             lambda g, G=G: np.allclose(g, _dnorm(G), rtol=1e-14)),
            (f"{name} hinf_norm(G, G)", lambda G=G: sysred.hinf_norm(G, G),
             lambda g: not np.any(g)),
            (f"{name} balanced_truncation tol", lambda G=G: sysred.balanced_truncation(G, tol=1e-3),
             lambda r: r.system.n == 0 and r.order == 0),
            (f"{name} BTReductor", lambda G=G: sysred.BTReductor(G).error_bounds(),
             lambda b, G=G: b.shape == G.batch_shape + (G.n + 1,)),
            (f"{name} diagonalize", lambda G=G: sysred.diagonalize(G)[0],
             lambda M, G=G: M.n == G.n),
            (f"{name} realify", lambda G=G: sysred.realify(G), lambda R, G=G: R.n == G.n),
            (f"{name} tail_bounds", lambda G=G: sysred.tail_bounds(sysred.hankel_singular_values(G)),  # noqa: E501
             lambda b, G=G: np.shape(b) == G.batch_shape + (G.n + 1,)),
        ]  # fmt: skip
        if G.is_discrete or not np.any(G.D):
            cases.append((f"{name} h2_norm", lambda G=G: sysred.h2_norm(G),
                          lambda h: np.all(np.isfinite(h))))  # fmt: skip
        if G.n == 0:
            cases.append((f"{name} modal_truncation", lambda G=G: sysred.modal_truncation(G, 0),
                          lambda r: r.system.n == 0))  # fmt: skip
    S = sysred.StateSpace(Z((0, 0)), Z((0, 2)), Z((3, 0)), np.ones((3, 2)), dt=0.1)
    cases.append(("n0 to_control/from_control", lambda: sysred.from_control(sysred.to_control(S)),
                  lambda R: R.n == 0 and R.dt == 0.1))  # fmt: skip
    for label, make in [
        ("ss([], [], [], 2)", lambda: control.ss([], [], [], [[2.0]])),
        ("ss(tf(2, 1))", lambda: control.ss(control.tf(2, 1))),
    ]:
        cases.append((f"from_control static gain {label}",
                      lambda make=make: sysred.hinf_norm(sysred.from_control(make())),
                      lambda g: g == 2.0))  # fmt: skip
    return cases


def _error_cases():
    """(name, call, expected error class name)."""
    G = sysred.StateSpace([[-1.0, 0.2], [0.0, -2.0]], [[1.0], [1.0]], [[1.0, 0.5]])
    batch = sysred.DiagonalStateSpace(-np.ones((40, 3)) * [1, 2, 3], np.ones((40, 3, 1)),
                                      np.ones((40, 1, 3)))  # fmt: skip
    cases = []
    calls = {
        "hankel_singular_values": sysred.hankel_singular_values,
        "diagonalize": sysred.diagonalize,
        "gramian_factors": sysred.gramian_factors,
        "gramians": sysred.gramians,
        "hinf_norm": sysred.hinf_norm,
        "hinf_norm(G, x)": lambda x: sysred.hinf_norm(G, x),
        "h2_norm": sysred.h2_norm,
        "balanced_truncation": lambda x: sysred.balanced_truncation(x, order=1),
        "BTReductor": sysred.BTReductor,
        "modal_truncation": lambda x: sysred.modal_truncation(x, 1),
        "realify": sysred.realify,
        "difference": lambda x: sysred.difference(x, G),
        "bilinear_to_continuous": sysred.bilinear_to_continuous,
        "to_control": sysred.to_control,
    }
    for kind, obj in [("control.ss", control.ss([[-1.0]], [[1.0]], [[1.0]], [[0.0]])),
                      ("ndarray", np.eye(3))]:  # fmt: skip
        for fname, fn in calls.items():
            cases.append((f"{fname}({kind})", lambda fn=fn, obj=obj: fn(obj), "NotASystemError"))
    B2 = sysred.DiagonalStateSpace(-np.ones((2, 3)), np.ones((2, 3, 1)), np.ones((2, 1, 3)))
    B3 = sysred.DiagonalStateSpace(-np.ones((3, 3)), np.ones((3, 3, 1)), np.ones((3, 1, 3)))
    cases.append(("hinf_norm(batch 2, batch 3)", lambda: sysred.hinf_norm(B2, B3), "ShapeError"))
    for m in ["foo", None]:
        cases.append(
            (
                f"balanced_truncation method={m!r}",
                lambda m=m: sysred.balanced_truncation(G, order=1, method=m),
                "OptionError",
            )
        )
    for tol in ["1e-3", float("nan"), -1e-3, 1.0]:
        cases.append((f"hinf_norm tol={tol!r}", lambda tol=tol: sysred.hinf_norm(G, tol=tol),
                      "OptionError"))  # fmt: skip
    for tol in ["1e-3", float("nan"), -1.0]:
        cases.append(
            (
                f"balanced_truncation tol={tol!r}",
                lambda tol=tol: sysred.balanced_truncation(G, tol=tol),
                "OrderError",
            )
        )
    for w in ["two", 0, 1.5]:
        cases.append((f"balanced_truncation workers={w!r}",
                      lambda w=w: sysred.balanced_truncation(batch, order=1, workers=w),
                      "OptionError"))  # fmt: skip

    def env_workers():
        old = os.environ.get("SYSRED_WORKERS")
        os.environ["SYSRED_WORKERS"] = "abc"
        try:
            return sysred.hankel_singular_values(batch)
        finally:
            if old is None:
                del os.environ["SYSRED_WORKERS"]
            else:
                os.environ["SYSRED_WORKERS"] = old

    cases.append(("SYSRED_WORKERS=abc", env_workers, "OptionError"))
    hsv = np.array([3.0, 2.0, 1.0])
    for order in [-1, 1.5, 4]:
        cases.append((f"tail_bound order={order!r}", lambda o=order: sysred.tail_bound(hsv, o),
                      "OrderError"))  # fmt: skip
    cases += [
        ("hankel_singular_values backend='foo'",
         lambda: sysred.hankel_singular_values(G, backend="foo"), "OptionError"),
        ("hankel_singular_values accuracy='best'",
         lambda: sysred.hankel_singular_values(G, accuracy="best"), "OptionError"),
        ("modal_truncation of a Jordan block",
         lambda: sysred.modal_truncation(
             sysred.StateSpace([[-1.0, 1.0], [0.0, -1.0]], [[0.0], [1.0]], [[1.0, 0.0]]), 1),
         "IllConditionedError"),
        ("hinf_norm of B, C ~ 1e160 (gamma^2 overflows)",
         lambda: _expect(sysred.hinf_norm(sysred.StateSpace([[-1.0]], [[1e160]], [[1e140]])),
                         1e300), None),
        ("hinf_norm of B, C ~ 1e-160", lambda: _expect(
            sysred.hinf_norm(sysred.StateSpace([[-1.0]], [[1e-150]], [[1e-150]])), 1e-300), None),
        ("HSVs of B ~ 1e-300", lambda: _expect(sysred.hankel_singular_values(
            sysred.StateSpace([[-1.0]], [[1e-300]], [[1.0]]))[0], 0.5e-300), None),
        ("stable poles in [-2e-13, 0)", lambda: _expect(sysred.hinf_norm(
            sysred.DiagonalStateSpace([-1e-13, -2e-13], [[1.0], [1.0]], [[1.0, 1.0]])), 1.5e13),
         None),
        ("bilinear_to_continuous with a pole at -1", lambda: sysred.bilinear_to_continuous(
            sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]], dt=1.0)), "SysredError"),
    ]  # fmt: skip
    return cases


def _expect(value, want):
    if not abs(value - want) <= 1e-12 * abs(want):
        raise AssertionError(f"wrong result {value!r}, expected {want!r}")
    return value


def classify_error(call, expected):
    """Outcome of a case that expects the error class ``expected`` (None: a correct value)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except AssertionError as exc:
        return "silent", f"wrong result: {exc}"
    except sysred.SysredError as exc:
        if expected is None:
            return "generic", f"{type(exc).__name__}: {exc}"
        names = {k.__name__ for k in type(exc).__mro__}
        ok = expected in names
        return ("ok" if ok else "generic"), f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - what we are counting
        return "raw", f"{type(exc).__name__}: {exc}"
    return ("ok", "defined") if expected is None else ("silent", "no error")


def classify_defined(call, check):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = call()
    except sysred.SysredError as exc:
        return "generic", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001
        return "raw", f"{type(exc).__name__}: {exc}"
    return ("ok", "defined") if check(out) else ("silent", "wrong result")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sysred_bad_input.txt"))
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    rows = [(n, *classify_defined(c, chk)) for n, c, chk in _defined_cases()]
    rows += [(n, *classify_error(c, exp)) for n, c, exp in _error_cases()]
    counts = Counter(r[1] for r in rows)
    lines = [
        f"sysred malformed inputs and empty systems{' -- ' + args.label if args.label else ''}",
        f"sysred at {Path(sysred.__file__).parent}; {len(rows)} cases",
        "outcome counts: "
        + ", ".join(
            f"{k} {counts.get(k, 0)}" for k in ("ok", "generic", "raw", "silent")
        ),  # fmt: skip
        "",
    ]
    for name, outcome, detail in rows:
        lines.append(f"{outcome:8} {name:52} {detail[:110]}")
    text = "\n".join(lines) + "\n"
    if args.out != "-":
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
