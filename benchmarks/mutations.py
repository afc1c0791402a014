"""Mutation testing of the LPOM solver, the compiler and the reconstruction networks: each named mutation changes
one formula, and the tests must fail on it. A mutation no test kills is a survivor: a test is missing, or the
mutant is equivalent.

    python benchmarks/mutations.py --out benchmarks/results/mutations/results.json   # and table.md beside it

Each mutation replaces one exact text (found once) in a source file of a copy of the package and the tests (the
checkout is never touched), runs the tests that cover that file there (pytest -x: the first failure kills it),
and restores the file.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LPOM_TESTS = [
    'tests/test_lpom.py',
    'tests/test_lpom_conv.py',
    'tests/test_lpom_formulas.py',
    'tests/test_lpom_topology.py',
    'tests/test_lpom_distributed.py',
]
COMPILER_TESTS = ['tests/test_compiler.py', 'tests/test_semantics.py', 'tests/test_rules.py', 'tests/test_lemmas.py']
RECON_TESTS = ['tests/test_recon.py']
MUTATIONS = [  # (name, file, original text, mutated text, the tests that cover it)
    (
        'hidden update: mu ratio inverted',
        'optnets/lpom/solver.py',
        'ratio = mu[i + 1] / mu[i] if ratio is None else ratio',
        'ratio = mu[i] / mu[i + 1] if ratio is None else ratio',
        LPOM_TESTS,
    ),
    (
        'hidden update: residual sign flipped',
        'optnets/lpom/solver.py',
        'residual = acts[i].phi(layers[i].apply(weights[i], xs[i])) - xs[i + 1]',
        'residual = xs[i + 1] - acts[i].phi(layers[i].apply(weights[i], xs[i]))',
        LPOM_TESTS,
    ),
    (
        'output update: gradient step sign flipped',
        'optnets/lpom/solver.py',
        '- step * loss_gradient(loss, xs[n], target))',
        '+ step * loss_gradient(loss, xs[n], target))',
        LPOM_TESTS,
    ),
    (
        'output update: mu multiplies',
        'optnets/lpom/solver.py',
        'step = 1 / mu[n] if step is None else step',
        'step = mu[n] if step is None else step',
        LPOM_TESTS,
    ),
    (
        "output update's cap: max for min",
        'optnets/lpom/solver.py',
        'min(1 / mu[-1], rho_max / output)',
        'max(1 / mu[-1], rho_max / output)',
        LPOM_TESTS,
    ),
    (
        'output factor: the loss constant dropped',
        'optnets/lpom/solver.py',
        'return acts[-1].lipschitz * LOSS_LIPSCHITZ[loss]',
        'return acts[-1].lipschitz',
        LPOM_TESTS,
    ),
    (
        'cross-entropy gradient without softmax',
        'optnets/lpom/solver.py',
        "return out - target if kind == 'mse' else torch.softmax(out, 1) - target",
        'return out - target',
        LPOM_TESTS,
    ),
    (
        'weight step scaled by beta, not 1/beta',
        'optnets/lpom/solver.py',
        '- target).T / act.lipschitz',
        '- target).T * act.lipschitz',
        LPOM_TESTS,
    ),
    (
        'weight update without its restart',
        'optnets/lpom/solver.py',
        'if t > 1 and torch.sum(direction * (new - weight)) > 0:',
        'if False:',
        LPOM_TESTS,
    ),
    (
        "weight update's restart sign flipped",
        'optnets/lpom/solver.py',
        'torch.sum(direction * (new - weight)) > 0:',
        'torch.sum(direction * (new - weight)) < 0:',
        LPOM_TESTS,
    ),
    (
        "weight update's extrapolation dropped",
        'optnets/lpom/solver.py',
        'extrapolated = weight + ((t - 1) / t_next) * (weight - previous)',
        'extrapolated = weight',
        LPOM_TESTS,
    ),
    (
        'rho without beta[i-1]',
        'optnets/lpom/solver.py',
        'acts[i - 1].lipschitz * acts[i].lipschitz * norm_squared(',
        'acts[i].lipschitz * norm_squared(',
        LPOM_TESTS,
    ),
    (
        'rho without beta[i]',
        'optnets/lpom/solver.py',
        'acts[i - 1].lipschitz * acts[i].lipschitz * norm_squared(',
        'acts[i - 1].lipschitz * norm_squared(',
        LPOM_TESTS,
    ),
    (
        'rho_max cap: max for min',
        'optnets/lpom/solver.py',
        'ratios = {i: min(mu[i + 1] / mu[i], rho_max',
        'ratios = {i: max(mu[i + 1] / mu[i], rho_max',
        LPOM_TESTS,
    ),
    (
        'dense adjoint: the bias column kept',
        'optnets/lpom/layers.py',
        'return (r @ weight[:, :-1]).reshape(like.shape)',
        'return (r @ weight[:, 1:]).reshape(like.shape)',
        LPOM_TESTS,
    ),
    (
        'power iteration: one step',
        'optnets/lpom/layers.py',
        '    for _ in range(iters):\n        x = x / x.norm()',
        '    for _ in range(1):\n        x = x / x.norm()',
        LPOM_TESTS,
    ),
    (
        'fold: x*0 kept as x',
        'optnets/compiler/lower.py',
        "if op == '*' and (is_number(left, 0.0) or is_number(right, 0.0)):\n        return 0.0",
        "if op == '*' and (is_number(left, 0.0) or is_number(right, 0.0)):\n        return left",
        COMPILER_TESTS,
    ),
    (
        'running sum not accumulated',
        'optnets/compiler/codegen.py',
        """self.emit(f'{total} = {"" if start else f"{total} + "}{new}')""",
        "self.emit(f'{total} = {new}')",
        COMPILER_TESTS,
    ),
    (
        'a read one step off',
        'optnets/compiler/lower.py',
        'index = max(step - lag, 0)',
        'index = max(step - lag - 1, 0)',
        COMPILER_TESTS,
    ),
    (
        'namespace without suffixes',
        'optnets/compiler/codegen.py',
        "name = f'{wanted}_{suffix}'",
        'break',
        COMPILER_TESTS,
    ),
    (
        'fuse: T-term coefficient not folded',
        'optnets/compiler/lower.py',
        'if (step, owner.stream) in self.settings.folded:\n            coeff = 1.0',
        'if False:\n            pass',
        COMPILER_TESTS,
    ),
    (
        'momentum: theory gamma changed',
        'optnets/rules/builtin.py',
        "theory={'g': MOMENTUM_GAMMA},",
        "theory={'g': 0.5},",
        COMPILER_TESTS,
    ),
    (
        'linear multistep: theory c changed',
        'optnets/rules/builtin.py',
        "special={'c': 0.0},\n    theory={'c': 0.0},",
        "special={'c': 0.0},\n    theory={'c': 0.1},",
        COMPILER_TESTS,
    ),
    (
        'canonical product: number not pushed into the leftmost factor',
        'optnets/rules/ir.py',
        'return mul(mul(left, right.left), right.right)',
        "return BinOp('*', left, right)",
        COMPILER_TESTS,
    ),
    (
        "pseudo-inverse ridge: the Gram diagonal's sum for its mean",
        'optnets/lpom/solver.py',
        'eps = reg * gram.diagonal().mean().clamp_min(1e-12)',
        'eps = reg * gram.diagonal().sum().clamp_min(1e-12)',
        LPOM_TESTS,
    ),
    (
        'fused sum: any coefficient of one for all of them',
        'optnets/compiler/lower.py',
        'all(c == 1.0 for c in coeffs)',
        'any(c == 1.0 for c in coeffs)',
        COMPILER_TESTS,
    ),
    (
        'reconstruction: L scaled by 1.5 (not ||A^T A||)',
        'optnets/recon/network.py',
        '        value = float(x.norm())\n    return value',
        '        value = float(x.norm())\n    return 1.5 * value',
        RECON_TESTS,
    ),
    (
        "ISTA-Net+'s prox without its skip r +",
        'optnets/recon/prox.py',
        'return r + self.project(self.backward_transform(self.threshold(code)))',
        'return self.project(self.backward_transform(self.threshold(code)))',
        RECON_TESTS,
    ),
    (
        'input scale: not applied at inference',
        'optnets/lpom/estimator.py',
        'x = x.reshape(-1, *self.layers_[0].in_shape) / self.input_scale_',
        'x = x.reshape(-1, *self.layers_[0].in_shape)',
        LPOM_TESTS,
    ),
    (
        'shared calls computed at the start of the step',
        'optnets/compiler/codegen.py',
        '            computed: set = set()\n',
        '            computed: set = set()\n'
        '            for shared in [s for _, v, _ in updates for s in shared_first(v, self.bound, computed)]:\n'
        "                self.emit(f'{self.bound[shared]} = {self.expression(shared, k)}')\n",
        COMPILER_TESTS,
    ),
    (
        'the activation applied in place to a tensor the forward still reads',
        'optnets/compiler/codegen.py',
        '{"" if self.made_here(value) else ".clone()"}',
        '',
        COMPILER_TESTS,
    ),
    (
        'running difference: the sums inside G(...) not checked',
        'optnets/compiler/plan.py',
        '    found += [t.value.terms for t in walk_terms(rule) if isinstance(t.value, (Transform, DataGradient))]',
        '    found += []',
        COMPILER_TESTS,
    ),
    (
        "ADMM-Net: the dual's sign flipped in the prox's data step",
        'optnets/recon/presets.py',
        "'z[k+1] = T(z[k] - a*G(z[k] - c*sum_t (x[t] - z[t])))'",
        "'z[k+1] = T(z[k] - a*G(z[k] + c*sum_t (x[t] - z[t])))'",
        RECON_TESTS,
    ),
]


def run(copy: Path, name, path, original, mutated, tests) -> dict:
    file = copy / path
    source = file.read_text()
    if source.count(original) != 1:
        return dict(name=name, file=path, status='stale: the original text is not found once')
    start = time.perf_counter()
    try:
        file.write_text(source.replace(original, mutated))
        result = subprocess.run(
            [sys.executable, '-m', 'pytest', '-x', '-q', '-p', 'no:cacheprovider', *tests],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        file.write_text(source)
    failed = [
        line.split(' ', 1)[1].split(' - ')[0] for line in result.stdout.splitlines() if line.startswith('FAILED ')
    ]
    return dict(
        name=name,
        file=path,
        status='killed' if result.returncode else 'SURVIVED',
        killed_by=failed[:1],
        seconds=round(time.perf_counter() - start),
    )


def copy_of_the_checkout(folder: Path) -> Path:
    """The package and the tests (the package imports from here: pytest puts this folder first on the path)."""
    for name in ('optnets', 'tests'):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('setup.cfg', 'pyproject.toml'):
        shutil.copy(ROOT / name, folder / name)
    return folder


def cell(text: str) -> str:
    """``text`` inside a Markdown table's cell (its pipes escaped)."""
    return text.replace('|', '\\|')


def table(results: list[dict]) -> str:
    """The docs' table: each mutation, its file, and the test that killed it (or SURVIVED)."""
    rows = ['| mutation | file | result | the first test that failed |', '|---|---|---|---|']
    for r in results:
        killers = ' '.join(f'`{cell(test)}`' for test in r.get('killed_by', []))
        rows.append(f'| {cell(r["name"])} | `{r["file"]}` | {r["status"]} | {killers} |')
    return '\n'.join(rows) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path)
    parser.add_argument(
        '--only', nargs='*', help="names (substrings) of the mutations to run; --out keeps the others' results"
    )
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        copy = copy_of_the_checkout(Path(folder))
        for mutation in MUTATIONS:
            if args.only and not any(part in mutation[0] for part in args.only):
                continue
            results.append(run(copy, *mutation))
            print(f'{results[-1]["status"]:9} {mutation[0]}  {" ".join(results[-1].get("killed_by", []))}', flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.only and args.out.exists():  # the others' results stay, in MUTATIONS' order
            ran = {r['name']: r for r in results}
            kept = {r['name']: r for r in json.loads(args.out.read_text())}
            results = [ran.get(m[0]) or kept[m[0]] for m in MUTATIONS if m[0] in ran or m[0] in kept]
        args.out.write_text(json.dumps(results, indent=1) + '\n')
        args.out.with_name('table.md').write_text(table(results))
    return 1 if any(r['status'] != 'killed' for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
