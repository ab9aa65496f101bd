"""The Ray cluster definitions (infra/ray/cluster.yaml for the cluster launcher,
infra/ray/kuberay-raycluster.yaml for KubeRay) against what the code asks of them: the
resources its tasks and its clip-model actor request, the images docker/ builds, the user and
HOME those images set up, the Ray version of the lock, and the settings it reads.

Expected values come from the code (the clip actor's request is recorded from
``start_clip_server`` itself, with a stand-in for ``ray``), from docker/ and from the lock,
never from copies here. Only the AWS instance types' sizes are facts this file states.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from pipeline.compute.clip_server import start_clip_server
from pipeline.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
RAY_DIR = ROOT / "infra" / "ray"
DOCKER = ROOT / "docker"
CLUSTER_YAML = RAY_DIR / "cluster.yaml"
KUBERAY_YAML = RAY_DIR / "kuberay-raycluster.yaml"
# (vCPUs, NVIDIA GPUs) of the instance types cluster.yaml names: Ray's launcher reads the same
# from AWS for resources a node type does not declare. Add a type here when cluster.yaml uses it.
INSTANCE_TYPES = {"m6i.xlarge": (4, 0), "c6i.4xlarge": (16, 0), "g6.2xlarge": (8, 1)}
# KubeRay turns the container's CPU and nvidia.com/gpu limits into Ray's CPU and GPU resources.
KUBERAY_GPU = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True)
class Group:
    """One node type (cluster launcher) or group (KubeRay), in Ray's terms."""

    name: str
    image: str  # repository name only: callaffect-ray-cpu from <registry>/callaffect-ray-cpu:<tag>
    resources: dict[str, float]  # Ray resources of one node
    min_nodes: int
    max_nodes: int


def _repository(reference: str) -> str:
    return reference.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]


def _launcher_groups() -> tuple[Group, list[Group]]:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    docker = config["docker"]
    head, workers = None, []
    for name, node in config["available_node_types"].items():
        vcpus, gpus = INSTANCE_TYPES[node["node_config"]["InstanceType"]]
        declared = node.get("resources", {})
        assert declared.get("GPU", 0) <= gpus, f"{name} declares more GPUs than its instance type has"
        resources = {"CPU": vcpus, "GPU": gpus, **declared}
        is_head = name == config["head_node_type"]
        image = node.get("docker", {}).get("head_image" if is_head else "worker_image") or docker.get(
            "head_image" if is_head else "worker_image") or docker["image"]
        group = Group(name, _repository(image), resources, node.get("min_workers", 0), node.get("max_workers", 0))
        if is_head:
            head = group
        else:
            workers.append(group)
    return head, workers


def _kuberay_documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(KUBERAY_YAML.read_text())}


def _quantity(value) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _pod_group(name: str, spec: dict) -> Group:
    (container,) = spec["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    params = spec.get("rayStartParams", {})
    resources = {
        "CPU": _quantity(params.get("num-cpus", limits["cpu"])),
        "GPU": _quantity(params.get("num-gpus", limits.get(KUBERAY_GPU, 0))),
        **json.loads(params.get("resources", "{}").strip('"').replace('\\"', '"')),
    }
    return Group(name, _repository(container["image"]), resources,
                 spec.get("minReplicas", 1), spec.get("maxReplicas", 1))


def _kuberay_groups() -> tuple[Group, list[Group]]:
    spec = _kuberay_documents()["RayCluster"]["spec"]
    return _pod_group("head", spec["headGroupSpec"]), [_pod_group(g["groupName"], g) for g in spec["workerGroupSpecs"]]


DEFINITIONS = {"cluster.yaml": _launcher_groups, "kuberay-raycluster.yaml": _kuberay_groups}


# --- what the code requests ------------------------------------------------------------------


class _FakeRay(types.ModuleType):
    """Stands in for ``ray`` inside start_clip_server: reports a cluster, records the actor."""

    def __init__(self, cluster_resources: dict[str, float]):
        super().__init__("ray")
        self._cluster = cluster_resources
        self.options: dict = {}
        self.actor_args: tuple = ()

    def cluster_resources(self) -> dict[str, float]:
        return dict(self._cluster)

    def remote(self, cls):
        fake = self

        class _Options:
            def options(self, **options):
                fake.options = options
                return self

            def remote(self, *args):
                fake.actor_args = args

        return _Options()


def _clip_settings() -> Settings:
    settings = Settings()
    return dataclasses.replace(settings, vision=dataclasses.replace(settings.vision, clip_model="s3://models/mae-dfer.pth"))


def _clip_actor_request(monkeypatch, cluster: list[Group], settings: Settings) -> tuple[dict[str, float], _FakeRay]:
    """The Ray resources start_clip_server asks for on a cluster made of these nodes."""
    total: dict[str, float] = {}
    for node in cluster:
        for name, amount in node.resources.items():
            total[name] = total.get(name, 0) + amount
    fake = _FakeRay(total)
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert start_clip_server(settings) is None  # the stand-in's actor handle
    options = fake.options
    request = {"CPU": options.get("num_cpus", 1), "GPU": options.get("num_gpus", 0), **options.get("resources", {})}
    return {k: v for k, v in request.items() if v}, fake


def _fits(request: dict[str, float], node: Group) -> bool:
    return all(node.resources.get(name, 0) >= amount for name, amount in request.items())


@dataclasses.dataclass(frozen=True)
class Roles:
    head: Group
    gpu: Group
    cpu: list[Group]
    gpu_resource: str  # the resource name under which the clip actor asks for its GPU


def _roles(monkeypatch, definition: str) -> Roles:
    """Which group is the GPU group: the one holding what the clip actor asks for beyond CPUs
    when a node of every group is up."""
    head, workers = DEFINITIONS[definition]()
    request, _ = _clip_actor_request(monkeypatch, [head, *workers], _clip_settings())
    accelerators = set(request) - {"CPU"}
    assert len(accelerators) == 1, f"the clip actor requests {request} on a cluster with {definition}'s groups up"
    (gpu_resource,) = accelerators
    gpu = [g for g in workers if g.resources.get(gpu_resource, 0) >= 1]
    assert len(gpu) == 1, f"expected one worker group with {gpu_resource}, found {[g.name for g in gpu]}"
    return Roles(head, gpu[0], [g for g in workers if g is not gpu[0]], gpu_resource)


def _config_text(path: Path) -> str:
    """The definition's values without its comments."""
    return json.dumps(list(yaml.safe_load_all(path.read_text())))


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("definition", sorted(DEFINITIONS))
def test_the_clip_actor_gets_its_gpu_from_the_gpu_group_only(monkeypatch, definition):
    roles = _roles(monkeypatch, definition)
    request, _ = _clip_actor_request(monkeypatch, [roles.head, roles.gpu, *roles.cpu], _clip_settings())
    assert _fits(request, roles.gpu), f"{roles.gpu.name} {roles.gpu.resources} cannot hold the clip actor {request}"
    for node in [roles.head, *roles.cpu]:
        assert node.resources.get(roles.gpu_resource, 0) == 0, f"{node.name} declares {roles.gpu_resource}"
        assert not _fits(request, node)


@pytest.mark.parametrize("definition", sorted(DEFINITIONS))
def test_without_a_gpu_node_the_clip_actor_runs_on_a_cpu_node_unless_cuda_is_asked_for(monkeypatch, definition):
    # The GPU group rests at zero nodes (the comments describe this case; change them with it):
    # with vision.device "auto" the actor then runs on a CPU node; with "cuda" it asks for the
    # GPU, which only the GPU group can give, so the autoscaler starts a GPU node for it.
    roles = _roles(monkeypatch, definition)
    assert roles.gpu.min_nodes == 0
    request, _ = _clip_actor_request(monkeypatch, [roles.head, *roles.cpu], _clip_settings())
    assert set(request) == {"CPU"}
    assert any(_fits(request, node) for node in roles.cpu)
    settings = _clip_settings()
    cuda = dataclasses.replace(settings, vision=dataclasses.replace(settings.vision, device="cuda"))
    request, _ = _clip_actor_request(monkeypatch, [roles.head, *roles.cpu], cuda)
    assert request.get(roles.gpu_resource) == 1
    assert _fits(request, roles.gpu) and not any(_fits(request, node) for node in [roles.head, *roles.cpu])


@pytest.mark.parametrize("definition", sorted(DEFINITIONS))
def test_call_tasks_fit_the_cpu_groups_and_never_the_head(definition):
    head, workers = DEFINITIONS[definition]()
    per_call = Settings().ray.num_cpus_per_call  # batch.py: options(num_cpus=settings.ray.num_cpus_per_call)
    assert head.resources["CPU"] == 0  # the head runs GCS, the autoscaler and Ray Client only
    assert all(node.resources["CPU"] >= per_call for node in workers)


def _built_images() -> dict[str, str]:
    """Dockerfile name -> image name, from each Dockerfile's `docker build -f ... -t NAME .` line."""
    built = {}
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        match = re.search(rf"docker build -f docker/{re.escape(dockerfile.name)} -t (\S+) ", dockerfile.read_text())
        assert match, f"{dockerfile.name} names no image in its header"
        built[dockerfile.name] = match.group(1)
    return built


@pytest.mark.parametrize("definition", sorted(DEFINITIONS))
def test_nodes_run_the_images_docker_builds(monkeypatch, definition):
    images = _built_images()
    roles = _roles(monkeypatch, definition)
    assert roles.head.image == images["ray-cpu.Dockerfile"]
    assert {g.image for g in roles.cpu} == {images["ray-cpu.Dockerfile"]}
    assert roles.gpu.image == images["ray-gpu.Dockerfile"]


def test_launcher_and_kuberay_define_the_same_cluster(monkeypatch):
    shapes, cpus = {}, {}
    for definition in DEFINITIONS:
        roles = _roles(monkeypatch, definition)
        (cpu_group,) = roles.cpu
        gpus = roles.gpu_resource
        shapes[definition] = {
            "head": (roles.head.image, roles.head.resources["CPU"], roles.head.resources.get(gpus, 0)),
            "cpu": (cpu_group.image, cpu_group.min_nodes, cpu_group.max_nodes, cpu_group.resources.get(gpus, 0)),
            "gpu": (roles.gpu.image, roles.gpu.min_nodes, roles.gpu.max_nodes, roles.gpu.resources[gpus]),
        }
        cpus[definition] = {"cpu": cpu_group.resources["CPU"], "gpu": roles.gpu.resources["CPU"]}
    assert shapes["cluster.yaml"] == shapes["kuberay-raycluster.yaml"]
    # A KubeRay pod fits on the instance type the launcher uses for the same group.
    pods, launcher = cpus["kuberay-raycluster.yaml"], cpus["cluster.yaml"]
    assert all(pods[role] <= launcher[role] for role in pods), (pods, launcher)


def test_kuberay_runs_the_locks_ray_version():
    pinned = re.search(r"^ray==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M).group(1)
    assert _kuberay_documents()["RayCluster"]["spec"]["rayVersion"] == pinned


def _runtime_stage(dockerfile: Path) -> str:
    return re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[-1]


def test_kuberay_pods_run_as_the_images_user():
    spec = _kuberay_documents()["RayCluster"]["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        dockerfile = next(f for f, image in _built_images().items() if image == _repository(container["image"]))
        (user,) = re.findall(r"^USER (\d+)", _runtime_stage(DOCKER / dockerfile), re.M)
        context = group["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == int(user), f"{dockerfile} runs as {user}"


@pytest.mark.parametrize("dockerfile", ["ray-cpu.Dockerfile", "ray-gpu.Dockerfile"])
def test_ray_images_put_the_models_where_the_default_cache_dir_points(dockerfile):
    # Workers read model_store.cache_dir (default under ~) with the image's HOME, which neither
    # definition overrides; the image converts the ONNX weights there at build time.
    stage = _runtime_stage(DOCKER / dockerfile)
    (home,) = re.findall(r"\bHOME=(\S+)", stage)
    cache_dir = Settings().model_store.cache_dir.replace("~", home, 1)
    assert re.search(rf"^COPY --from=build \S*\s*\S+ {re.escape(cache_dir)}$", stage, re.M), cache_dir
    for path in (CLUSTER_YAML, KUBERAY_YAML):
        assert not re.search(r"\bHOME\b", _config_text(path)), f"{path.name} overrides HOME"


def _setting_exists(variable: str) -> bool:
    if variable == ENV_PREFIX + "CONFIG":
        return True
    section, _, name = variable[len(ENV_PREFIX):].lower().partition("__")
    sections = {f.name: f.default_factory for f in dataclasses.fields(Settings)}
    return section in sections and name in {f.name for f in dataclasses.fields(sections[section]())}


def test_callaffect_variables_in_the_definitions_are_real_settings():
    named = set()
    for path in (CLUSTER_YAML, KUBERAY_YAML):
        named |= set(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", path.read_text()))
    assert named  # both explain how the driver reaches the cluster
    assert all(_setting_exists(v) for v in named), sorted(v for v in named if not _setting_exists(v))


def test_workers_need_no_callaffect_environment(monkeypatch):
    """The definitions set no CALLAFFECT_* on any node: the driver's settings, environment
    included, reach the clip actor and every call task (ray.put, a pickle) whole."""
    env = {
        "CALLAFFECT_S3__ENDPOINT_URL": "http://s3.internal:9000",
        "CALLAFFECT_S3__RAW_BUCKET": "acme-raw",
        "CALLAFFECT_VISION__CLIP_MODEL": "s3://models/mae-dfer.pth",
        "CALLAFFECT_TRANSCRIPTION__TEMPERATURES": "0.0,0.4",
    }
    driver = load_settings(env=env)
    _, fake = _clip_actor_request(monkeypatch, [Group("gpu", "", {"CPU": 8, "GPU": 1}, 1, 1)], driver)
    (actor_settings,) = fake.actor_args
    assert Settings.from_dict(actor_settings) == driver
    assert Settings.from_dict(pickle.loads(pickle.dumps(driver.to_dict()))) == driver
    for path in (CLUSTER_YAML, KUBERAY_YAML):
        assert ENV_PREFIX not in _config_text(path), f"{path.name} sets settings on the nodes"
