"""Where every benchmark puts its results: a markdown table printed and
written to BUILD/bench/NAME.md, and the figures to BUILD/bench/NAME.json."""
import json
import os


def write_report(out_dir, name, lines, data):
    table = "\n".join(lines) + "\n"
    print(table)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2)
