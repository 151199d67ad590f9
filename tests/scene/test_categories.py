from importlib.resources import as_file, files

import pytest

from spacelm.scene.categories import (
    MAPPINGS,
    SETS,
    category_names,
    label_mapping,
    load_label_mapping,
    map_label,
    normalize_label,
    nyu40_id,
    nyu40_name,
)


@pytest.mark.parametrize("set_name, count", [("nyu40", 40), ("scannet18", 18), ("spatiallm59", 59),
                                             ("spatiallm20", 20)])
def test_set_sizes_and_names_are_unique_and_normalised(set_name, count):
    names = category_names(set_name)
    assert len(names) == len(set(names)) == count
    assert all(name == normalize_label(name) for name in names)


def test_unknown_set_lists_the_known_ones():
    with pytest.raises(ValueError, match="nyu40, scannet18, spatiallm59, spatiallm20"):
        category_names("coco")


def test_names_come_normalised_in_file_order():
    assert category_names("spatiallm59")[:3] == ("sofa", "chair", "dining chair")
    assert "micro-wave oven" in category_names("spatiallm59")
    assert "floor-standing lamp" in category_names("spatiallm59")
    assert category_names("spatiallm20")[:2] == ("curtain", "nightstand")
    assert category_names("nyu40")[0] == "wall" and category_names("nyu40")[-1] == "otherprop"


def test_known_nyu40_ids_and_spelling_variants():
    assert nyu40_name(24) == "refrigerator"
    assert nyu40_id("refridgerator") == nyu40_id("Refrigerator") == 24
    assert nyu40_name(32) == "nightstand"
    assert nyu40_id("night stand") == nyu40_id("night_stand") == 32
    assert nyu40_id("book shelf") == nyu40_id("bookshelf") == 10
    assert nyu40_id("white board") == 30
    assert nyu40_id("bath tub") == 36
    assert all(nyu40_id(nyu40_name(i)) == i for i in range(1, 41))


@pytest.mark.parametrize("bad", [0, 41, -1])
def test_nyu40_name_rejects_out_of_range_ids(bad):
    with pytest.raises(ValueError, match=f"unknown NYU40 id {bad}"):
        nyu40_name(bad)


def test_nyu40_id_names_the_unknown_value():
    with pytest.raises(ValueError, match="'fridge'"):
        nyu40_id("fridge")


def test_scannet18_names_are_the_nyu40_names_of_their_ids():
    detection_ids = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39]
    assert category_names("scannet18") == tuple(nyu40_name(i) for i in detection_ids)


@pytest.mark.parametrize("source, target", MAPPINGS)
def test_every_mapping_stays_inside_its_sets(source, target):
    mapping = label_mapping(source, target)
    assert mapping
    assert set(mapping.values()) <= set(category_names(target))
    if source == "nyu40":
        for name in mapping:
            nyu40_id(name)  # canonical names and spelling variants only
        assert set(category_names("nyu40")) & set(mapping) == {nyu40_name(nyu40_id(n)) for n in mapping}
    else:
        assert set(mapping) <= set(category_names(source))


def test_spatiallm59_to_20_reconstruction():
    m = label_mapping("spatiallm59", "spatiallm20")
    assert set(m.values()) == set(category_names("spatiallm20"))  # every evaluation class is reachable
    assert m["dining chair"] == m["bar chair"] == "chair"
    assert m["tv cabinet"] == "tv cabinet"
    assert {m[k] for k in ("wine cabinet", "wall cabinet", "sideboard", "cupboard")} == {"cabinet"}
    assert m["dressing table"] == "dresser"
    assert m["potted bonsai"] == "plants"
    assert m["combination sofa"] == "sofa"
    assert m["dining table combination"] == "dining table"
    assert m["multifunctional combination bed"] == "bed"
    for unmapped in ("pillow", "desk", "leisure table and chair combination", "micro-wave oven"):
        assert unmapped not in m


def test_nyu40_to_spatiallm59_leaves_structure_and_ambiguous_classes_out():
    m = label_mapping("nyu40", "spatiallm59")
    assert m["bed"] == "bed" and m["bathtub"] == "tub" and m["television"] == "tv"
    assert m["night stand"] == m["nightstand"] == "nightstand"
    assert m["refridgerator"] == "refrigerator"
    assert m["floor mat"] == "carpet" and m["picture"] == "painting"
    for unmapped in ("wall", "floor", "ceiling", "door", "window", "table", "lamp", "dresser", "otherprop"):
        assert unmapped not in m


def test_composed_nyu40_to_spatiallm20():
    m = label_mapping("nyu40", "spatiallm20")
    assert m["bed"] == "bed"
    assert m["cabinet"] == "cabinet"
    assert m["picture"] == "painting"
    assert m["television"] == "tv"
    assert m["night stand"] == "nightstand"
    assert "toilet" not in m  # in the 59, not among the 20
    to59, to20 = label_mapping("nyu40", "spatiallm59"), label_mapping("spatiallm59", "spatiallm20")
    assert m == {k: to20[v] for k, v in to59.items() if v in to20}


def test_nyu40_to_scannet18_is_by_id():
    m = label_mapping("nyu40", "scannet18")
    assert set(m.values()) == set(category_names("scannet18"))
    assert m["refridgerator"] == "refrigerator" and m["bath tub"] == "bathtub"
    assert "pillow" not in m


def test_label_mapping_returns_a_copy_and_rejects_unknown_pairs():
    label_mapping("spatiallm59", "spatiallm20")["sofa"] = "bed"
    assert label_mapping("spatiallm59", "spatiallm20")["sofa"] == "sofa"
    with pytest.raises(ValueError, match="spatiallm20->nyu40.*known: spatiallm59->spatiallm20"):
        label_mapping("spatiallm20", "nyu40")
    assert set(SETS) >= {s for pair in MAPPINGS for s in pair}


def test_map_label():
    m = label_mapping("spatiallm59", "spatiallm20")
    assert map_label("Dining_Chair", m) == "chair"
    assert map_label("TV_cabinet ", m) == "tv cabinet"
    assert map_label("ceiling_light", m) is None


@pytest.mark.parametrize("raw, expected", [
    ("dining_chair", "dining chair"),
    ("  Dining  Chair\t", "dining chair"),
    ("micro-wave_oven", "micro-wave oven"),
    ("floor-standing_lamp", "floor-standing lamp"),
    ("leisure_table_and_chair_combination", "leisure table and chair combination"),
    ("", ""),
])
def test_normalize_label(raw, expected):
    assert normalize_label(raw) == expected


def _write(tmp_path, text, name="benchmark_categories.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_label_mapping_good_file(tmp_path):
    path = _write(tmp_path, "\ufeffid\tspatiallm59\tspatiallm20\n"
                            "1\tdining_chair\tchair\n"
                            "\n"
                            "2\tTV_Cabinet\ttv cabinet\n"
                            "3\tpillow\t\n"
                            "4\tbar_chair\tchair\n"
                            "5\tdining_chair\tchair\n"
                            "6\tscreen\n"
                            "7\t\tsofa\n")
    m = load_label_mapping(path, "spatiallm59", "spatiallm20")
    assert m == {"dining chair": "chair", "tv cabinet": "tv cabinet", "bar chair": "chair"}
    assert load_label_mapping(str(path), "id", "spatiallm20") == {"1": "chair", "2": "tv cabinet", "4": "chair",
                                                                   "5": "chair", "7": "sofa"}


def test_load_label_mapping_names_the_missing_column(tmp_path):
    path = _write(tmp_path, "spatiallm59\tspatiallm20\nsofa\tsofa\n")
    with pytest.raises(ValueError, match=r"benchmark_categories\.tsv, line 1: missing column\(s\) 'scannet18'"):
        load_label_mapping(path, "spatiallm59", "scannet18")


def test_load_label_mapping_rejects_bad_lines(tmp_path):
    path = _write(tmp_path, "spatiallm59\tspatiallm20\nsofa\tsofa\nwasher\tmachine\textra\n")
    with pytest.raises(ValueError, match=r"benchmark_categories\.tsv, line 3: 3 tab-separated fields"):
        load_label_mapping(path, "spatiallm59", "spatiallm20")
    path = _write(tmp_path, "spatiallm59\tspatiallm20\nsofa\tsofa\nchair\tchair\nSofa\tbed\n")
    with pytest.raises(ValueError, match=r"line 4: 'sofa' maps to 'bed', but line 2 maps it to 'sofa'"):
        load_label_mapping(path, "spatiallm59", "spatiallm20")
    path = _write(tmp_path, "")
    with pytest.raises(ValueError, match="empty file"):
        load_label_mapping(path, "spatiallm59", "spatiallm20")


def test_load_label_mapping_reads_the_built_in_file_like_label_mapping():
    with as_file(files("spacelm.scene").joinpath("data", "spatiallm59_to_spatiallm20.tsv")) as path:
        assert load_label_mapping(path, "spatiallm59", "spatiallm20") == label_mapping("spatiallm59", "spatiallm20")


def test_nyu40_spellings_do_not_collide():
    rows = files("spacelm.scene").joinpath("data", "nyu40.tsv").read_text(encoding="utf-8").splitlines()[1:]
    spellings = []
    for row in rows:
        _, name, aliases = row.split("\t")
        spellings += [normalize_label(s) for s in [name, *aliases.split("|")] if s]
    assert len(spellings) == len(set(spellings)) == 45
