"""deploy/ (Zero to JupyterHub), as far as it can be checked without a cluster, docker or the network.

Every YAML file parses; the Helm values use only keys the chart defines (deploy/chart-keys.txt, looked
up in the chart's schema); the hub's Python snippets compile and give the grader image to instructors
only; nbgrader's exchange is the shared volume; the grading Jobs run ``python -m autograder grade`` on a
lab the kit has, with the sandbox; the images' Python layer is deploy/install-python-layer.sh, which
installs requirements.txt's exact pins; deploy/collect_inbound.py takes each student's latest
submission and copies no link. Nothing here builds an image, renders the chart or starts a pod.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

from autograder.paths import REPO
from labtools.labs import lab_ids

DEPLOY = REPO / "deploy"
CHART_VERSION = "4.4.0"
EXCHANGE = "/srv/nbgrader/exchange"
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)$")


def load(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None]


def values() -> dict:
    (doc,) = load("values.yaml")
    return doc


def lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def jobs() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in load("grade-job.yaml") if doc["kind"] == "Job"}


def containers(job: dict) -> list[dict]:
    spec = job["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def grade_command() -> list[str]:
    (job,) = [j for name, j in jobs().items() if name.startswith("grade-")]
    return job["spec"]["template"]["spec"]["containers"][0]["command"]


# --------------------------------------------------------------------------------------------------
# YAML and the chart's keys


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.glob("*.yaml"))
    assert {f.name for f in files} >= {"values.yaml", "exchange-pvc.yaml", "grade-job.yaml"}
    for path in files:
        docs = load(path.name)
        assert docs and all(isinstance(doc, dict) for doc in docs), path.name
        if path.name not in ("values.yaml", "secrets.example.yaml"):
            for doc in docs:  # Kubernetes manifests: applied with --namespace, named, of a kind
                assert {"apiVersion", "kind", "metadata"} <= doc.keys() and doc["metadata"]["name"], path.name
                assert "namespace" not in doc["metadata"], path.name


def chart_keys() -> set[str]:
    lines = (DEPLOY / "chart-keys.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def key_paths(tree: dict, prefix: tuple[str, ...] = ()):
    for key, value in tree.items():
        path = prefix + (str(key),)
        yield path
        if isinstance(value, dict):
            yield from key_paths(value, path)


def unknown_keys(tree: dict, keys: set[str]) -> list[str]:
    """Keys of ``tree`` the chart does not define: every top-level and second-level key must be listed
    (unless its section is free-form, ``<section>.*``); deeper ones where their section lists its keys."""
    unknown = []
    for path in key_paths(tree):
        dotted, parent = ".".join(path), ".".join(path[:-1])
        if len(path) > 1 and f"{parent}.*" in keys:
            continue
        closed = len(path) <= 2 or any(k.startswith(parent + ".") for k in keys)
        if closed and dotted not in keys:
            unknown.append(dotted)
    return unknown


def test_values_use_only_keys_the_chart_defines():
    keys = chart_keys()
    assert {"hub", "singleuser", "proxy", "hub.config", "singleuser.storage.extraVolumes"} <= keys
    for name in ("values.yaml", "secrets.example.yaml"):
        (tree,) = load(name)
        assert unknown_keys(tree, keys) == [], name
    # the rule has teeth: a misspelt or misplaced key is caught
    assert unknown_keys({"singleuser": {"storage": {"extraVolume": []}}, "hub": {"extraFiles": {}, "cmd": 1}}, keys) \
        == ["singleuser.storage.extraVolume", "hub.cmd"]


def test_the_chart_version_is_pinned_alike_everywhere():
    readme = (DEPLOY / "README.md").read_text()
    assert f"--version {CHART_VERSION}" in readme
    assert f"jupyterhub/jupyterhub {CHART_VERSION}" in (DEPLOY / "values.yaml").read_text()
    assert f"pinned to {CHART_VERSION}" in (DEPLOY / "chart-keys.txt").read_text()
    versions = set(re.findall(r"--version (\S+)", readme + (DEPLOY / "values.yaml").read_text()))
    assert versions == {CHART_VERSION}


def test_secrets_stay_out_of_the_values_and_are_placeholders():
    secretish = re.compile(r"(secret|password|token)$", re.I)  # client_secret, secretToken, api_token
    assert [p for p in key_paths(values()) if secretish.search(p[-1])] == []
    (secrets,) = load("secrets.example.yaml")
    leaves = [(p, lookup(secrets, ".".join(p))) for p in key_paths(secrets)]
    leaves = [(p, v) for p, v in leaves if not isinstance(v, dict)]
    assert leaves and all(str(v).startswith("REPLACE-ME") for _, v in leaves)
    assert "secrets.yaml" in (DEPLOY / ".gitignore").read_text().split()


# --------------------------------------------------------------------------------------------------
# the hub's configuration


def test_instructors_and_only_instructors_get_the_grader_image():
    config = values()
    grader_image = lookup(config, "custom.graderImage")
    student_image = "{name}:{tag}".format(**lookup(config, "singleuser.image"))
    assert grader_image != student_image and "grader" in grader_image and "student" in student_image
    pulled = lookup(config, "prePuller.extraImages.metric-lab-grader")
    assert f"{pulled['name']}:{pulled['tag']}" == grader_image
    assert lookup(config, "hub.config.JupyterHub.load_groups.instructors.users")

    c = Config()
    for name, source in sorted(lookup(config, "hub.extraConfig").items()):
        code = compile(source, f"hub.extraConfig.{name}", "exec")
        exec(code, {"c": c, "get_config": lambda key, default=None: lookup(config, key)})
    hook = c.KubeSpawner.pre_spawn_hook

    def spawn(*groups):
        spawner = SimpleNamespace(user=SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups]),
                                  image=student_image)
        hook(spawner)
        return spawner.image

    assert spawn("instructors") == grader_image
    assert spawn("instructors", "staff") == grader_image
    assert spawn() == spawn("students") == spawn("instructors-to-be") == student_image


def test_every_user_pod_mounts_the_exchange_and_nbgrader_config_points_to_it():
    config = values()
    singleuser = config["singleuser"]
    volumes = {v["name"]: v for v in singleuser["storage"]["extraVolumes"]}
    mounts = {m["mountPath"]: m for m in singleuser["storage"]["extraVolumeMounts"]}
    (pvc,) = load("exchange-pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    exchange = volumes[mounts[EXCHANGE]["name"]]
    assert exchange["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert not mounts[EXCHANGE].get("readOnly")  # students submit into it

    nbgrader_file = singleuser["extraFiles"]["nbgrader-config"]
    assert nbgrader_file["mountPath"] == "/etc/jupyter/nbgrader_config.py"
    c = Config()
    exec(compile(nbgrader_file["stringData"], "nbgrader_config.py", "exec"), {"get_config": lambda: c})
    assert c.CourseDirectory.course_id == "metric-lab"
    assert c.Exchange.root == EXCHANGE

    data_root = singleuser["extraEnv"]["LABTOOLS_DATA"]
    assert mounts[data_root]["readOnly"] is True
    assert volumes[mounts[data_root]["name"]]["persistentVolumeClaim"]["readOnly"] is True


# --------------------------------------------------------------------------------------------------
# grading as Kubernetes Jobs


def test_the_grading_job_runs_autograder_grade_on_a_lab_of_the_kit():
    command = grade_command()
    assert command[:4] == ["python", "-m", "autograder", "grade"]
    lab = command[4]
    assert lab in lab_ids()
    assert command[5] == f"/srv/submitted/{lab}"
    assert command[command.index("--out") + 1] == f"/srv/grades/{lab}"
    assert "--no-sandbox" not in command
    assert set(jobs()) == {f"collect-{lab.replace('_', '-')}", f"grade-{lab.replace('_', '-')}"}


def test_the_collect_job_reads_the_exchange_read_only_and_feeds_the_grade_job():
    lab = grade_command()[4]
    collect = jobs()[f"collect-{lab.replace('_', '-')}"]
    grade = jobs()[f"grade-{lab.replace('_', '-')}"]
    (container,) = containers(collect)
    assert container["command"][:2] == ["python", "/opt/metric-lab/deploy/collect_inbound.py"]
    assert (DEPLOY / "collect_inbound.py").is_file()
    assert container["command"][2:5] == [lab, f"{EXCHANGE}/metric-lab/inbound", f"/srv/grading/submitted/{lab}"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[EXCHANGE]["readOnly"] is True
    volumes = {v["name"]: v["persistentVolumeClaim"] for v in collect["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts[EXCHANGE]["name"]] == {"claimName": "metric-lab-exchange", "readOnly": True}
    grading_claim = volumes[mounts["/srv/grading"]["name"]]["claimName"]

    grade_spec = grade["spec"]["template"]["spec"]
    grade_mounts = {m["mountPath"]: m for m in grade_spec["containers"][0]["volumeMounts"]}
    grade_volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in grade_spec["volumes"]}
    for path, sub in (("/srv/submitted", "submitted"), ("/srv/grades", "grades"), ("/srv/data", "data")):
        assert grade_mounts[path]["subPath"] == sub and grade_volumes[grade_mounts[path]["name"]] == grading_claim
    assert grade_mounts["/srv/submitted"]["readOnly"] is True and grade_mounts["/srv/data"]["readOnly"] is True
    env = {e["name"]: e["value"] for e in grade_spec["containers"][0]["env"]}
    assert env["LABTOOLS_DATA"] == "/srv/data"
    command = grade_spec["containers"][0]["command"]
    assert command[command.index("--jobs") + 1] == str(grade_spec["containers"][0]["resources"]["limits"]["cpu"])


def test_the_grading_pods_run_the_grader_image_with_no_privilege_the_sandbox_does_not_need():
    grader_image = lookup(values(), "custom.graderImage")
    for job in jobs().values():
        for container in containers(job):
            assert container["image"] == grader_image
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and not context.get("privileged")
            assert context["capabilities"] == {"drop": ["ALL"]}
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    grade = next(j for name, j in jobs().items() if name.startswith("grade-"))
    pod = grade["spec"]["template"]["spec"]
    # what bubblewrap needs in a pod (deploy/README.md): its own user namespace, an unmasked /proc
    assert pod["hostUsers"] is False
    assert all(c["securityContext"]["procMount"] == "Unmasked" for c in containers(grade))
    assert [c["command"] for c in pod["initContainers"]] == [["python", "-m", "labtools.sandbox"]]


# --------------------------------------------------------------------------------------------------
# the image definition and its Python layer


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [" ".join(i.split()) for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def test_the_dockerfile_pins_its_base_and_builds_the_python_layer_with_the_script():
    instructions = dockerfile_instructions()
    (base,) = [i for i in instructions if i.startswith("ARG BASE_IMAGE=")]
    assert re.fullmatch(r"ARG BASE_IMAGE=quay\.io/jupyter/minimal-notebook:\d{4}-\d{2}-\d{2}", base)
    assert any(re.search(r"apt-get install .*\bbubblewrap\b", i) for i in instructions if i.startswith("RUN"))
    copies = [i for i in instructions if i.startswith("COPY") and "install-python-layer.sh" in i]
    (copy,) = copies
    target = copy.split()[-1]
    assert "requirements.txt" in copy.split() and "deploy/install-python-layer.sh" in copy.split()
    layer = f"bash {target}install-python-layer.sh {target}requirements.txt"
    assert any(i.startswith("RUN") and layer in i for i in instructions), layer
    assert f"ENV LABTOOLS_DATA={lookup(values(), 'singleuser.extraEnv.LABTOOLS_DATA')}" in instructions
    stages = [i.split()[-1] for i in instructions if i.startswith("FROM")]
    assert {"python-layer", "grader", "student"} <= set(stages) and stages[-1] == "student"
    # the grader's whole repository (deploy/collect_inbound.py with it) is at /opt/metric-lab
    assert any(re.fullmatch(r"COPY (--chown=\S+ )?\. /opt/metric-lab", i) for i in instructions)
    student = instructions[next(n for n, i in enumerate(instructions) if i.endswith("AS student")):]
    for extension in ("nbgrader.server_extensions.formgrader", "@jupyter/nbgrader:formgrader",
                      "@jupyter/nbgrader:create-assignment"):
        assert any("disable" in i and extension in i for i in student), extension
    assert not any("/opt/metric-lab " in i or i.endswith("/opt/metric-lab") for i in student)


def requirement_pins() -> dict[str, str]:
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines and all(PIN.match(line) for line in lines), "requirements.txt: every line must be name==version"
    return {PIN.match(line).group(1).lower(): PIN.match(line).group(2) for line in lines}


def install_layer(*args: str, dry_run: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("DRY_RUN", None)
    if dry_run:
        env["DRY_RUN"] = "1"
    return subprocess.run(["bash", str(DEPLOY / "install-python-layer.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_install_script_installs_requirements_txt_with_its_exact_pins():
    script = DEPLOY / "install-python-layer.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    pins = requirement_pins()
    assert {"torch", "torchvision", "nbgrader", "jupyterlab"} <= pins.keys()

    requirements = str(REPO / "requirements.txt")
    run = install_layer(requirements)
    assert run.returncode == 0, run.stderr
    commands = [line[2:].split() for line in run.stdout.splitlines() if line.startswith("+ ")]
    installs = [c for c in commands if c[1:4] == ["-m", "pip", "install"]]
    (from_file,) = [c for c in installs if "--requirement" in c]
    assert from_file[from_file.index("--requirement") + 1] == requirements
    assert from_file[from_file.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    for command in installs:  # nothing unpinned, nothing upgraded past a pin: named packages are pins
        assert not {"-U", "--upgrade", "--pre"} & set(command)
        arguments = command[4:]
        values_of_options = {arguments[n + 1] for n, a in enumerate(arguments) if a in ("--requirement", "--extra-index-url")}
        named = [a for a in arguments if not a.startswith("-") and a not in values_of_options]
        assert all(PIN.match(a) for a in named), command
    backend = [a for c in installs for a in c if a.startswith("setuptools==")]
    assert backend and all(a in (REPO / "Makefile").read_text() for a in backend)

    kit = install_layer("--kit", str(REPO))
    assert kit.returncode == 0, kit.stderr
    (command,) = [line[2:].split() for line in kit.stdout.splitlines() if line.startswith("+ ")]
    assert {"--no-deps", "--editable"} <= set(command) and command[-1] == str(REPO)
    assert install_layer(str(REPO / "no-such-requirements.txt")).returncode != 0


# --------------------------------------------------------------------------------------------------
# collect_inbound.py


@pytest.fixture(scope="module")
def collector():
    spec = importlib.util.spec_from_file_location("deploy_collect_inbound", DEPLOY / "collect_inbound.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def submit(inbound: Path, student: str, lab: str, when: str, files: dict[str, str], token: str = "r4nd0m") -> Path:
    folder = inbound / f"{student}+{lab}+{when} UTC+{token}"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_collect_takes_each_students_latest_submission_of_the_lab_and_no_link(collector, tmp_path):
    lab, other = "lab1_retrieval", "lab2_triplet"
    inbound, dest, secret = tmp_path / "inbound", tmp_path / "submitted" / lab, tmp_path / "secret.txt"
    secret.write_text("the grader's own file")
    submit(inbound, "alice", lab, "2026-01-01 10:00:00.000001", {f"{lab}.ipynb": "first"})
    submit(inbound, "alice", lab, "2026-01-02 10:00:00.000001", {f"{lab}.ipynb": "second"})
    submit(inbound, "alice", other, "2026-01-03 10:00:00.000001", {f"{other}.ipynb": "another lab"})
    bob = submit(inbound, "bob", lab, "2026-01-01 09:00:00.000001", {f"{lab}.ipynb": "bob", "sub/notes.txt": "n"})
    (bob / "stolen.txt").symlink_to(secret)
    (bob / "linked").symlink_to(tmp_path)
    (inbound / "not-a-submission").mkdir()
    submit(inbound, "carol", lab, "yesterday", {f"{lab}.ipynb": "?"})
    (dest / "stale").mkdir(parents=True)

    assert collector.main([lab, str(inbound), str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["alice", "bob"]
    assert (dest / "alice" / lab / f"{lab}.ipynb").read_text() == "second"
    assert sorted(p.name for p in (dest / "alice" / lab).iterdir()) == [f"{lab}.ipynb"]
    bob_files = sorted(str(p.relative_to(dest / "bob" / lab)) for p in (dest / "bob" / lab).rglob("*"))
    assert bob_files == [f"{lab}.ipynb", "sub", "sub/notes.txt"]
    report = Path(f"{dest}.collected.txt").read_text()
    for expected in ("2 submissions", "stolen.txt: a symbolic link", "linked: a symbolic link",
                     "not-a-submission", "'yesterday UTC' not understood"):
        assert expected in report

    from autograder.grading.intake import collect as intake

    found = intake(lab, dest, tmp_path / "scratch")
    assert [(student, notebook.name) for student, _, notes, notebook in found] == [
        ("alice", f"{lab}.ipynb"), ("bob", f"{lab}.ipynb")]


def test_collect_keeps_the_latest_submission_before_a_deadline(collector, tmp_path):
    lab, inbound = "lab1_retrieval", tmp_path / "inbound"
    submit(inbound, "alice", lab, "2026-01-01 10:00:00.000001", {f"{lab}.ipynb": "on time"}, "a")
    submit(inbound, "alice", lab, "2026-01-05 10:00:00.000001", {f"{lab}.ipynb": "late"}, "b")
    submit(inbound, "dave+x", lab, "2026-01-06 10:00:00.000001", {f"{lab}.ipynb": "only late"}, "c")
    deadline = collector.parse_timestamp("2026-01-03 23:59:59 UTC")
    chosen, skipped = collector.find(lab, inbound, deadline)
    assert skipped == []
    assert [(s.student, s.folder.name.endswith("+a")) for s in chosen] == [("alice", True), ("dave+x", False)]
    assert "after the deadline" in " ".join(chosen[1].notes)
    assert collector.parse_name("x+lab1_retrieval+2026-01-01 10:00:00.0 UTC") == ("x", "lab1_retrieval", "2026-01-01 10:00:00.0 UTC")
    assert collector.parse_name("..+lab+2026-01-01 10:00:00.0 UTC+r") is None
    assert collector.parse_name("nonsense") is None
