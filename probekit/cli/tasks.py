"""`probekit tasks list|show|new`: the task registry from the command line."""

from __future__ import annotations

import argparse

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list and show registered tasks")
    tsub = p.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    ls = tsub.add_parser("list", help="list registered tasks")
    add_include(ls)
    ls.set_defaults(func=cmd_list)
    show = tsub.add_parser("show", help="show one task's spec and fingerprint")
    show.add_argument("name", help="a registered task (probekit tasks list), or one in an "
                      "--include-path folder")
    add_include(show)
    show.set_defaults(func=cmd_show)
    new = tsub.add_parser("new", help="write a commented spec (and card stub) for a new task")
    new.add_argument("name", help="the new task's name: letters, digits, '-' and '_'")
    new.add_argument("--world", required=True, help="a registered world")
    new.add_argument("--out", default=".", metavar="DIR", help="folder to write NAME.yaml and "
                     "NAME.md in (default: the current one)")
    add_include(new)
    new.set_defaults(func=cmd_new)


def add_include(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="another folder of task YAML files, read one level deep (repeatable; "
                        "also PROBEKIT_TASKS_PATH)")
    p.add_argument("--recursive", action="store_true",
                   help="also read the subfolders of each --include-path")


def include_paths(args: argparse.Namespace) -> list:
    """The include folders of a command: `--include-path` as given, or with every subfolder
    when `--recursive`."""
    from probekit.tasks import with_subfolders

    paths = getattr(args, "include_path", [])
    return with_subfolders(paths) if getattr(args, "recursive", False) else paths


def cmd_list(args: argparse.Namespace) -> int:
    import shutil

    from probekit.tasks import registry

    reg = registry(include_paths(args))
    rows = [("task", "version", "world", "targets", "pairs", "description")]
    for name in reg.names():
        task = reg.get(name)
        s = task.spec
        rows.append((name, str(s.version), s.world, str(len(task.targets)),
                     "yes" if s.counterfactual else "no", " ".join(s.description.split())))
    # One line per task: fixed columns padded to their widest value, the description cut
    # with an ellipsis at the terminal's width.
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    room = max(shutil.get_terminal_size((100, 24)).columns - sum(widths) - 2 * 5, 20)
    for r in rows:
        text = r[5] if len(r[5]) <= room else r[5][:room - 1] + "…"
        print("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [text]).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import textwrap

    from probekit.tasks import load_task

    task = load_task(args.name, include_paths(args))
    print(show_text(task))
    print(textwrap.fill(" ".join(task.spec.description.split()), width=100,
                        initial_indent="description: ", subsequent_indent="  "))
    return 0


def show_text(task) -> str:
    """A task's spec as readable YAML: every knob with its value (defaults filled in), splits in
    the spec's order, each target with the label columns it stands for, names as written."""
    s = task.spec
    targets = []
    for t in s.targets:
        columns = [c.name for c in task.targets if c.name == t.name or c.family == t.name]
        entry = {"name": t.name, "kind": t.kind}
        if t.chance is not None:
            entry["chance"] = t.chance
        if columns != [t.name]:
            entry["columns"] = columns
        targets.append(entry)
    view = {"license": s.license, "world": s.world, "knobs": s.knobs,
            "splits": {k: {"size": v.size, "seed": v.seed, **({"knobs": v.knobs} if v.knobs
                                                              else {})}
                       for k, v in s.splits.items()},
            "targets": targets, "control": s.control, "counterfactual": s.counterfactual}
    if s.violations is not None:
        view["violations"] = {k: list(v) if isinstance(v, tuple) else v
                              for k, v in s.violations.items()}
    where = f"  ({task.path})" if task.path else ""
    return (f"# {s.name} v{s.version}  fingerprint {task.fingerprint}{where}\n"
            + yaml.safe_dump(view, sort_keys=False, allow_unicode=True,
                             default_flow_style=None, width=100).rstrip())


def cmd_new(args: argparse.Namespace) -> int:
    from probekit.authoring import write_new_task
    from probekit.io import check_output_dir
    from probekit.tasks import check_task_name

    check_task_name(args.name)  # the name and the folder first, before anything is built
    check_output_dir(args.out, "--out")
    spec, card = write_new_task(args.name, args.world, args.out, include_paths(args))
    print(f"wrote {spec} and {card}; edit the spec, then check it: "
          f"probekit tasks show {args.name} --include-path {args.out}")
    return 0
