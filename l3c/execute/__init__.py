"""The execution stage: running a compiled schedule (one host: `single`, several: `hosts`) or a
traced program eagerly (`eager`), and what those runs share (`args`: binding and checking the
arguments; `staging`: the arena's input and result arrays, the pool's turn)."""
from .args import bind_args, check_args, describe_signature  # noqa: F401
from .single import prepare, profile, release, run  # noqa: F401
