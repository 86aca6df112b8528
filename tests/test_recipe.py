"""Recipe files: every registered variant has one, keys and types are checked, overrides and the data set tables
([digits], [fashion-mnist]) work."""

import tomllib

import pytest

import edgebnn  # noqa: F401
from edgebnn import recipe
from edgebnn.errors import EdgebnnError

REGISTERED = ["bireal-18", "bireal-34", "reactnet-a", "reactnet-18", "xnorpp-18-case1", "xnorpp-18-case2",
              "xnorpp-18-case3", "xnorpp-18-case4", "xnorpp-18-bnn", "sdbnn-resnet20", "sdbnn-resnet18",
              "sdbnn-vgg-small", "sdbnn-18", "resnet-18", "resnet-34"]


def test_one_recipe_per_registered_variant():
    assert sorted(recipe.names()) == sorted(REGISTERED)


def test_recipes_match_the_registry():
    from edgebnn import archs

    assert set(recipe.names()) <= set(archs.names())
    for name in recipe.names():
        assert recipe.load(name)["model"] == name


@pytest.mark.parametrize("name", REGISTERED)
def test_every_recipe_loads_and_has_a_small_digits_recipe(name):
    full, small = recipe.load(name), recipe.load(name, dataset="digits")
    assert full["paper"]["source"], "paper recipes name their source"
    assert small["ours"], "the digits recipe is marked as ours"
    assert small["dataset"] == "digits" and small["input_size"] <= 32 and small["flip"] is False
    assert recipe.total_epochs(small) <= 20 and recipe.total_epochs(full) >= 90
    assert all(s["batch_size"] <= 128 for s in small["steps"])


FASHION = ["bireal-18", "reactnet-18", "resnet-18", "xnorpp-18-case4", "sdbnn-resnet20"]


@pytest.mark.parametrize("name", FASHION)
def test_fashion_mnist_tables_are_ours_at_28_pixels(name):
    r = recipe.load(name, dataset="fashion-mnist")
    assert r["source"] == f"models/{name}.toml [fashion-mnist]" and r["dataset"] == "fashion-mnist"
    assert r["input_size"] == 28 and "Fashion-MNIST" in r["ours"] and r["arch"]["width"] in (0.25, 1.0)
    assert r["paper"] == recipe.load(name)["paper"], "the paper's figures stay the paper's"
    assert recipe.text(name).count("[fashion-mnist]") == 1 and "kept from the paper" in recipe.text(name)
    for where in ("idx:/data/kmnist", "fashion-mnist:/data/fmnist"):  # any 28x28 IDX folder takes the table
        other = recipe.load(name, dataset=where)
        assert other["dataset"] == where and other["steps"] == r["steps"]


def test_fashion_mnist_tables_keep_each_papers_steps():
    steps = {n: recipe.load(n, dataset="fashion-mnist")["steps"] for n in FASHION}
    for name in ("reactnet-18", "sdbnn-resnet20"):  # two steps, distilled from the real-valued resnet-18
        s1, s2 = steps[name]
        assert (s1["binary_weights"], s1["binary_activations"]) == (False, True)
        assert (s2["binary_weights"], s2["binary_activations"]) == (True, True) and s2["init_from_previous"]
        assert {s1["loss"], s2["loss"]} == {"distributional"} and {s1["teacher"], s2["teacher"]} == {"resnet-18"}
        assert s1["weight_decay_on"] == "conv_kernels"
    for name in ("bireal-18", "xnorpp-18-case4"):  # one step from scratch
        (step,) = steps[name]
        assert (step["binary_weights"], step["binary_activations"]) == (True, True)
    assert steps["xnorpp-18-case4"][0]["optimizer"] == "adamw"
    assert steps["bireal-18"][0]["label_smoothing"] == 0.1
    (teacher,) = steps["resnet-18"]
    assert (teacher["binary_weights"], teacher["binary_activations"]) == (False, False)
    twin = recipe.load("reactnet-18-real", dataset="fashion-mnist")
    assert twin["steps"][0]["epochs"] == recipe.total_epochs(recipe.load("reactnet-18", dataset="fashion-mnist"))


def test_a_recipe_without_a_fashion_mnist_table_keeps_its_own():
    r = recipe.load("bireal-34", dataset="fashion-mnist")
    assert r["dataset"] == "fashion-mnist" and r["source"] == "models/bireal-34.toml" and r["input_size"] == 224
    assert recipe.load("bireal-18", dataset="digits")["source"] == "models/bireal-18.toml [digits]"


def test_paper_figures_and_two_steps():
    r = recipe.load("reactnet-a")
    assert r["paper"]["top1"] == 69.4 and r["dataset"] == "tfds:imagenet2012" and r["input_size"] == 224
    s1, s2 = r["steps"]
    assert (s1["binary_weights"], s1["binary_activations"]) == (False, True)
    assert (s2["binary_weights"], s2["binary_activations"]) == (True, True) and s2["init_from_previous"]
    assert s1["weight_decay"] == 1e-5 and s1["weight_decay_on"] == "conv_kernels" and s2["weight_decay"] == 0
    assert s1["lr"] == 1.25e-3 and s1["batch_size"] == 256 and s1["loss"] == "distributional"
    assert s1["teacher"] == "resnet-34"
    assert recipe.load("bireal-18")["paper"]["top5"] == 79.5
    assert recipe.load("bireal-18")["steps"][0]["label_smoothing"] == 0.1
    sd = recipe.load("sdbnn-resnet20")
    assert sd["dataset"] == "cifar10" and sd["steps"][0]["lr"] == 0.11 and sd["steps"][0]["optimizer"] == "sgd"
    assert sd["paper"]["top1"] == 86.9
    assert "not confirmed" in recipe.load("xnorpp-18-case4")["description"]
    assert recipe.load("xnorpp-18-case4")["steps"][0]["optimizer"] == "adamw"


def test_overrides():
    r = recipe.load("reactnet-18", dataset="digits", sets=["steps.lr=0.01", "steps.1.epochs=3", "arch.width=0.5",
                                                           "augment=cifar", "input_size=16"], batch_size=32)
    assert [s["lr"] for s in r["steps"]] == [0.01, 0.01] and [s["epochs"] for s in r["steps"]] == [6, 3]
    assert r["arch"]["width"] == 0.5 and r["augment"] == "cifar" and r["input_size"] == 16
    assert [s["batch_size"] for s in r["steps"]] == [32, 32]
    assert [s["epochs"] for s in recipe.load("bireal-18", dataset="digits", epochs=2)["steps"]] == [2]


def test_real_twin():
    twin = recipe.load("reactnet-18", dataset="digits", real=True)
    assert len(twin["steps"]) == 1 and twin["real"] and twin["steps"][0]["loss"] == "crossentropy"
    step = twin["steps"][0]
    assert (step["binary_weights"], step["binary_activations"]) == (False, False) and step["epochs"] == 12
    assert recipe.load("bireal-18-real", dataset="digits")["real"]
    assert recipe.load("bireal-18", dataset="digits", sets=["real=true"])["steps"][0]["binary_weights"] is False


def test_resolved_recipe_round_trips():
    r = recipe.load("sdbnn-18", dataset="digits", sets=["steps.0.lr=0.5"])
    text = recipe.dumps({k: v for k, v in r.items() if k != "source"})
    again = recipe.validate(tomllib.loads(text), "resolved")
    again.pop("digits")
    assert again == {k: v for k, v in r.items() if k != "source"}


def _write(tmp_path, text):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


GOOD = """model = "bireal-18"
dataset = "digits"
[[steps]]
epochs = 1
batch_size = 32
lr = 1e-3
"""


def test_a_copied_recipe_file_works(tmp_path):
    r = recipe.load(_write(tmp_path, GOOD))
    assert r["steps"][0]["optimizer"] == "adam" and r["steps"][0]["name"] == "step1" and r["source"].endswith(
        "mine.toml")


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("lr = 1e-3", "lrr = 1e-3"), r"mine.toml: unknown key steps.0.'lrr'"),
    (GOOD.replace("epochs = 1", 'epochs = "1"'), r"mine.toml: key steps.0.epochs must be an integer"),
    (GOOD + "warmup = true\n", r"mine.toml: unknown key steps.0.'warmup'"),
    (GOOD.replace('dataset = "digits"', 'datset = "digits"'), r"mine.toml: unknown key 'datset'"),
    (GOOD.replace('dataset = "digits"', "flip = 1"), r"mine.toml: key flip must be true or false"),
    (GOOD.replace("lr = 1e-3", 'lr = 1e-3\noptimizer = "lamb"'), r"steps.0.optimizer = 'lamb' is not one of"),
    (GOOD.replace("lr = 1e-3", 'lr = 1e-3\nloss = "distributional"'), r"needs steps.0.teacher"),
    (GOOD.replace("lr = 1e-3", ""), r"mine.toml: missing key steps.0.lr"),
    (GOOD + "[digits]\nbatch = 3\n", r"mine.toml: unknown key digits.'batch'"),
    (GOOD + '["fashion-mnist"]\nwidth = 3\n', r"mine.toml: unknown key fashion-mnist.'width'"),
    (GOOD + '["fashion-mnist"]\ninput_size = "28"\n', r"mine.toml \[fashion-mnist\]: key input_size must be an"),
    ("model = [", r"mine.toml is not valid TOML"),
])
def test_bad_recipe_names_the_key_and_file(tmp_path, text, message):
    with pytest.raises(EdgebnnError, match=message):
        recipe.load(_write(tmp_path, text))


def test_bad_overrides_and_names():
    with pytest.raises(EdgebnnError, match=r"unknown model 'bireal-99'"):
        recipe.load("bireal-99")
    with pytest.raises(EdgebnnError, match=r"--set steps.lrate=1: unknown key steps.0.'lrate'"):
        recipe.load("bireal-18", sets=["steps.lrate=1"])
    with pytest.raises(EdgebnnError, match=r"key steps.0.epochs must be an integer"):
        recipe.load("bireal-18", sets=["steps.0.epochs=two"])
    with pytest.raises(EdgebnnError, match=r"has 1 step"):
        recipe.load("bireal-18", sets=["steps.3.epochs=2"])
    with pytest.raises(EdgebnnError, match=r"KEY=VALUE"):
        recipe.load("bireal-18", sets=["epochs"])
    with pytest.raises(EdgebnnError, match=r"recipe file nowhere/x.toml does not exist"):
        recipe.load("nowhere/x.toml")
