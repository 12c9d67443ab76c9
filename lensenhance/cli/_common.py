"""What the command modules share: failing with a message, option parsing, the run's command."""

import shlex

import click


def fail(message):
    """Stop the command with this message (exit status 1, no traceback)."""
    raise click.ClickException(message)


def parse_hdu(value):
    """An --hdu option: an index when it is a number, else an extension name."""
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


# Options that split one run over sessions; the run they build is the same without them.
_SESSION_OPTIONS = ("resume", "overwrite", "max_steps")


def command_line(ctx):
    """The canonical command that reproduces this invocation, for model cards."""
    # The program name as installed, whatever name this invocation was given.
    words = ["lensenhance", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if param.name in _SESSION_OPTIONS:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Option) and param.is_flag:
            words += [param.opts[-1]] if value else []
        elif isinstance(value, (tuple, list)):  # multiple=True: the option once per value
            for item in value:
                words += [param.opts[-1], str(item)]
        elif value is not None:
            words += [param.opts[-1], str(value)]
    return shlex.join(words)  # pastes back into a shell: a --note with spaces is quoted


def given(**values):
    """Keyword arguments whose value was given (None means: the function's default)."""
    return {key: value for key, value in values.items() if value is not None}
