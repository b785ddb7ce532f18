"""Hierarchy against the real bundled files (facts written out by hand) and a small hand-made tree."""
import csv
import json

import pytest

from contracts.expansion import Relatives
from contracts.hierarchy import ROOT_MID, Hierarchy
from tests.helpers import METADATA

H500 = METADATA / "challenge-2019-label500-hierarchy.json"
C500 = METADATA / "challenge-2019-classes-description-500.csv"
H601 = METADATA / "bbox_labels_600_hierarchy.json"
C601 = METADATA / "class-descriptions-boxable.csv"

# The 16 challenge classes with two parents, by MID (names in comments).
MULTI_PARENT_500 = {
    "/m/0fbdv": {"/m/06nwz", "/m/0jbk"},      # Shellfish: Seafood, Animal
    "/m/02pjr4": {"/m/019dx1", "/m/0h99cwc"},  # Blender: Home appliance, Kitchen appliance
    "/m/07xyvk": {"/m/019dx1", "/m/0h99cwc"},  # Coffeemaker
    "/m/063rgb": {"/m/019dx1", "/m/0h99cwc"},  # Mixer
    "/m/0fx9l": {"/m/019dx1", "/m/0h99cwc"},   # Microwave oven
    "/m/040b_t": {"/m/019dx1", "/m/0h99cwc"},  # Refrigerator
    "/m/029bxz": {"/m/019dx1", "/m/0h99cwc"},  # Oven
    "/m/0_cp5": {"/m/03xxp", "/m/0fbdv"},      # Oyster: Invertebrate, Shellfish
    "/m/0h8mzrc": {"/m/01x3z", "/m/0c_jw"},    # Wall clock: Clock, Furniture
    "/m/0n28_": {"/m/03hl4l9", "/m/0fbdv"},    # Crab: Marine invertebrates, Shellfish
    "/m/0cjq5": {"/m/03hl4l9", "/m/0fbdv"},    # Lobster
    "/m/0ll1f78": {"/m/03hl4l9", "/m/0fbdv"},  # Shrimp
    "/m/07j87": {"/m/02xwb", "/m/0f4s2w"},     # Tomato: Fruit, Vegetable
    "/m/0qmmr": {"/m/01prls", "/m/02w3_ws"},   # Wheelchair: Land vehicle, Personal care
    "/m/0kmg4": {"/m/0138tl", "/m/01dws"},     # Teddy bear: Toy, Bear
    "/m/07cmd": {"/m/01prls", "/m/083kb"},     # Tank: Land vehicle, Weapon
}
LOBSTER, SHELLFISH, MARINE_INV, INVERTEBRATE, ANIMAL, SEAFOOD, FOOD = (
    "/m/0cjq5", "/m/0fbdv", "/m/03hl4l9", "/m/03xxp", "/m/0jbk", "/m/06nwz", "/m/02wbm")
TOMATO, FRUIT, VEGETABLE = "/m/07j87", "/m/02xwb", "/m/0f4s2w"
PUMPKIN, SQUASH, ZUCCHINI = "/m/05zsy", "/m/0dv77", "/m/027pcv"
TEDDY, BEAR, CARNIVORE, MAMMAL, TOY = "/m/0kmg4", "/m/01dws", "/m/01lrl", "/m/04rky", "/m/0138tl"


def read_mids(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [row[0] for row in csv.reader(f)]


@pytest.fixture(scope="module")
def h500():
    return Hierarchy.from_json(H500)


@pytest.fixture(scope="module")
def h601():
    return Hierarchy.from_json(H601)


def test_500_classes_are_the_class_file(h500):
    mids = read_mids(C500)
    assert len(mids) == 500
    assert h500.mids == frozenset(mids)
    assert ROOT_MID not in h500


def test_500_multi_parent_classes(h500):
    multi = {m: set(h500.parents(m)) for m in h500.mids if len(h500.parents(m)) > 1}
    assert multi == MULTI_PARENT_500


def test_500_leaves_and_depth(h500):
    assert sum(h500.is_leaf(m) for m in h500.mids) == 443
    assert max(len(h500.ancestors(m)) for m in h500.mids) == 5


def test_500_known_chains(h500):
    # Lobster -> {Marine invertebrates -> Invertebrate -> Animal, Shellfish -> {Animal, Seafood}}
    assert h500.ancestors(LOBSTER) == {SHELLFISH, MARINE_INV, INVERTEBRATE, ANIMAL, SEAFOOD}
    assert h500.parents(MARINE_INV) == {INVERTEBRATE}
    assert h500.parents(INVERTEBRATE) == {ANIMAL}
    assert h500.parents(ANIMAL) == frozenset()
    # Pumpkin -> Squash -> Vegetable; Tomato -> {Fruit, Vegetable}
    assert h500.ancestors(PUMPKIN) == {SQUASH, VEGETABLE}
    assert h500.children(SQUASH) == {PUMPKIN, ZUCCHINI}
    assert h500.ancestors(TOMATO) == {FRUIT, VEGETABLE}
    assert {TOMATO, SQUASH, PUMPKIN, ZUCCHINI} <= h500.descendants(VEGETABLE)
    assert TOMATO in h500.descendants(FRUIT)
    # Teddy bear -> {Toy, Bear -> Carnivore -> Animal}
    assert h500.ancestors(TEDDY) == {TOY, BEAR, CARNIVORE, ANIMAL}


def test_unknown_mid_is_an_error(h500):
    with pytest.raises(KeyError, match="/m/nope"):
        h500.ancestors("/m/nope")
    with pytest.raises(KeyError, match="not in the hierarchy"):
        h500.children(ROOT_MID)


def test_601_classes_and_parts_ignored(h601):
    mids = read_mids(C601)
    assert len(mids) == 601
    assert h601.mids == frozenset(mids)
    assert max(len(h601.ancestors(m)) for m in h601.mids) == 6
    assert h601.ancestors(LOBSTER) == {SHELLFISH, MARINE_INV, INVERTEBRATE, ANIMAL, SEAFOOD, FOOD}
    assert h601.ancestors(TEDDY) == {TOY, BEAR, CARNIVORE, MAMMAL, ANIMAL}
    # "Person" has part "Human body", which has part "Human face"; "Bicycle" has part "Bicycle wheel": not "is a".
    person, body, face, bicycle, wheel = "/m/01g317", "/m/02p0tk3", "/m/0dzct", "/m/0199g", "/m/01bqk0"
    assert body not in h601.descendants(person)
    assert h601.ancestors(face) == frozenset()
    assert wheel not in h601.descendants(bicycle)
    assert h601.ancestors(wheel) == frozenset()


# A hand-made DAG:  A -> {B, C};  B -> {D, E};  C -> {D, F};  G alone (root-level leaf).
SMALL = {"LabelName": ROOT_MID, "Subcategory": [
    {"LabelName": "A", "Subcategory": [
        {"LabelName": "B", "Subcategory": [{"LabelName": "D"}, {"LabelName": "E"}]},
        {"LabelName": "C", "Subcategory": [{"LabelName": "D"}, {"LabelName": "F"}],
         "Part": [{"LabelName": "P"}]}]},
    {"LabelName": "G"}]}


def test_small_tree_sets():
    h = Hierarchy.from_json(SMALL)
    assert h.mids == {"A", "B", "C", "D", "E", "F", "G"}
    assert h.parents("D") == {"B", "C"}
    assert h.ancestors("D") == {"A", "B", "C"}
    assert h.descendants("A") == {"B", "C", "D", "E", "F"}
    assert h.descendants("C") == {"D", "F"}
    assert [m for m in "ABCDEFG" if h.is_leaf(m)] == ["D", "E", "F", "G"]


def test_small_relatives():
    h = Hierarchy.from_json(SMALL)
    classes = ["G", "D", "A", "C", "B", "F"]  # E deliberately absent

    def pairs(direction):
        relatives = Relatives.from_hierarchy(h, classes, direction)
        return {(c, int(j)) for c in range(len(classes))
                for j in relatives.indices[relatives.indptr[c]:relatives.indptr[c + 1]]}

    up = pairs("ancestors")
    # D(1) -> A(2), C(3), B(4); C(3) -> A(2); B(4) -> A(2); F(5) -> A(2), C(3)
    assert up == {(1, 2), (1, 3), (1, 4), (3, 2), (4, 2), (5, 2), (5, 3)}
    assert pairs("descendants") == {(j, i) for i, j in up}
    assert Relatives.from_hierarchy(h, ["G"]).indices.size == 0
    with pytest.raises(ValueError, match="direction"):
        Relatives.from_hierarchy(h, classes, "up")


def test_small_restricted_tree():
    h = Hierarchy.from_json(SMALL)
    tree = h.restricted_tree({"A", "D", "F", "G"})
    assert tree == {"LabelName": ROOT_MID, "Subcategory": [
        {"LabelName": "A", "Subcategory": [{"LabelName": "D"}, {"LabelName": "F"}]},
        {"LabelName": "G"}]}
    # D keeps both of its (kept) parents, as the official files write multi-parent classes.
    tree = h.restricted_tree({"B", "C", "D"})
    assert tree == {"LabelName": ROOT_MID, "Subcategory": [
        {"LabelName": "B", "Subcategory": [{"LabelName": "D"}]},
        {"LabelName": "C", "Subcategory": [{"LabelName": "D"}]}]}
    restricted = Hierarchy.from_json(json.loads(json.dumps(tree)))
    assert restricted.parents("D") == {"B", "C"}
    with pytest.raises(KeyError):
        h.restricted_tree({"A", "Z"})


def test_bad_json_errors(tmp_path):
    bad = tmp_path / "h.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="h.json"):
        Hierarchy.from_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Hierarchy.from_json(tmp_path / "missing.json")
    bad.write_text('{"Subcategory": []}')
    with pytest.raises(ValueError, match="LabelName"):
        Hierarchy.from_json(bad)
