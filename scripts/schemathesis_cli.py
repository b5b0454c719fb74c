"""Runs schemathesis's command line (`st`), working around a CPython 3.11
fault: hypothesis describes lambdas by parsing their module with `ast`, and
under the raised recursion limit it runs tests with, CPython 3.11 can raise
`SystemError: AST constructor recursion depth mismatch`, which schemathesis
reports as an error of the API under test. Such a lambda is described as
`<unknown>` instead; nothing about the generated requests changes."""

import sys

import hypothesis.internal.lambda_sources as lambda_sources
from schemathesis.cli import schemathesis

_describe = lambda_sources._lambda_description


def _describe_or_give_up(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _describe_or_give_up

if __name__ == "__main__":
    sys.exit(schemathesis())
