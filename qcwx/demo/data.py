"""Static tables of the demo region: hospitals, analytes, analysers, methods, QC lots.

Plain data only; :mod:`qcwx.demo.seed` turns it into rows. Concentrations are what the
QC material really contains (the "true" value every lab's results scatter around).
"""

from __future__ import annotations

from dataclasses import dataclass

REGION_CODE = "DEMO"
REGION_NAME = "示范市"
# The city's two district centres (code, name); hospital i belongs to DISTRICTS[i % 2].
DISTRICTS: tuple[tuple[str, str], ...] = (("DEMO-A", "示范市东城区"), ("DEMO-B", "示范市西城区"))
LAB_NAME = "检验科"

# (name, level, type): hospital 1 is where the demo director, supervisor and tech work.
HOSPITALS: tuple[tuple[str, str, str], ...] = (
    ("示范市第一人民医院", "三级", "综合医院"),
    ("示范市中心医院", "三级", "综合医院"),
    ("示范医学院附属医院", "三级", "综合医院"),
    ("示范市中医医院", "三级", "中医医院"),
    ("示范市妇幼保健院", "三级", "妇幼保健院"),
    ("示范市第二人民医院", "三级", "综合医院"),
    ("示范市肿瘤医院", "三级", "专科医院"),
    ("示范市第三人民医院", "三级", "综合医院"),
    ("东城区人民医院", "二级", "综合医院"),
    ("西城区人民医院", "二级", "综合医院"),
    ("南湖区人民医院", "二级", "综合医院"),
    ("北山区人民医院", "二级", "综合医院"),
    ("东城区中医医院", "二级", "中医医院"),
    ("南湖区中医医院", "二级", "中医医院"),
    ("西城区妇幼保健院", "二级", "妇幼保健院"),
    ("北山区妇幼保健院", "二级", "妇幼保健院"),
    ("临江县人民医院", "二级", "综合医院"),
    ("临江县中医医院", "二级", "中医医院"),
    ("青山县人民医院", "二级", "综合医院"),
    ("示范市第四人民医院", "二级", "综合医院"),
    ("示范市传染病医院", "二级", "专科医院"),
    ("示范康华医院", "二级", "民营医院"),
    ("示范仁爱医院", "二级", "民营医院"),
    ("东城区东门街道社区卫生服务中心", "一级", "社区卫生服务中心"),
    ("东城区新华街道社区卫生服务中心", "一级", "社区卫生服务中心"),
    ("西城区城关街道社区卫生服务中心", "一级", "社区卫生服务中心"),
    ("南湖区湖滨街道社区卫生服务中心", "一级", "社区卫生服务中心"),
    ("南湖区长桥街道社区卫生服务中心", "一级", "社区卫生服务中心"),
    ("北山区北关街道社区卫生服务中心", "一级", "社区卫生服务中心"),
    ("青山县青石镇中心卫生院", "一级", "综合医院"),
    ("示范安康医院", "一级", "民营医院"),
    ("示范济民医院", "一级", "民营医院"),
)


@dataclass(frozen=True)
class AnalyteDef:
    """A demo analyte: code (as in qcstats.specs), plausible range, concentrations per lot."""

    code: str
    plausible: tuple[float, float]
    # lot key -> (level 1 normal, level 2 pathological)
    conc: dict[str, tuple[float, float]]


LOT_MAIN, LOT_RANDOX, LOT_NEW = "biorad-26440", "randox-1463UN", "biorad-26450"

# The 14 chemistry analytes of QC_SPEC §5 used in the demo, in display order.
ANALYTES: tuple[AnalyteDef, ...] = (
    AnalyteDef("K", (0.5, 20.0), {LOT_MAIN: (4.10, 6.30), LOT_RANDOX: (4.25, 6.05),
                                  LOT_NEW: (4.02, 6.45)}),
    AnalyteDef("Na", (50.0, 250.0), {LOT_MAIN: (138.5, 158.0), LOT_RANDOX: (136.0, 154.5),
                                     LOT_NEW: (140.0, 160.5)}),
    AnalyteDef("Cl", (40.0, 200.0), {LOT_MAIN: (101.0, 118.0), LOT_RANDOX: (98.5, 115.0),
                                     LOT_NEW: (102.5, 120.0)}),
    AnalyteDef("Ca", (0.2, 6.0), {LOT_MAIN: (2.30, 3.20), LOT_RANDOX: (2.20, 3.05),
                                  LOT_NEW: (2.34, 3.28)}),
    AnalyteDef("GLU", (0.1, 100.0), {LOT_MAIN: (5.50, 15.80), LOT_RANDOX: (5.20, 16.80),
                                     LOT_NEW: (5.65, 16.20)}),
    AnalyteDef("UREA", (0.1, 150.0), {LOT_MAIN: (5.80, 19.50), LOT_RANDOX: (6.20, 21.00),
                                      LOT_NEW: (5.60, 20.10)}),
    AnalyteDef("CREA", (5.0, 3000.0), {LOT_MAIN: (85.0, 480.0), LOT_RANDOX: (95.0, 520.0),
                                       LOT_NEW: (88.0, 465.0)}),
    AnalyteDef("UA", (10.0, 2000.0), {LOT_MAIN: (310.0, 620.0), LOT_RANDOX: (330.0, 585.0),
                                      LOT_NEW: (302.0, 640.0)}),
    AnalyteDef("TP", (5.0, 150.0), {LOT_MAIN: (62.0, 45.5), LOT_RANDOX: (58.0, 48.0),
                                    LOT_NEW: (63.5, 44.0)}),
    AnalyteDef("ALB", (2.0, 80.0), {LOT_MAIN: (38.5, 28.0), LOT_RANDOX: (36.0, 29.5),
                                    LOT_NEW: (39.2, 27.2)}),
    AnalyteDef("TC", (0.1, 30.0), {LOT_MAIN: (4.20, 6.80), LOT_RANDOX: (3.95, 6.35),
                                   LOT_NEW: (4.32, 7.02)}),
    AnalyteDef("TG", (0.05, 60.0), {LOT_MAIN: (1.20, 2.60), LOT_RANDOX: (1.05, 2.45),
                                    LOT_NEW: (1.26, 2.72)}),
    AnalyteDef("ALT", (0.0, 5000.0), {LOT_MAIN: (35.0, 160.0), LOT_RANDOX: (42.0, 148.0),
                                      LOT_NEW: (33.0, 171.0)}),
    AnalyteDef("AST", (0.0, 5000.0), {LOT_MAIN: (40.0, 185.0), LOT_RANDOX: (38.0, 172.0),
                                      LOT_NEW: (42.0, 196.0)}),
)

# The urgent panel an emergency analyser in a tertiary lab also runs.
EMERGENCY_PANEL = ("K", "Na", "Cl", "GLU", "UREA", "CREA")
ISE_ANALYTES = ("K", "Na", "Cl")

# code -> (name, principle)
METHODS: dict[str, tuple[str, str]] = {
    "ISE-IND": ("间接离子选择电极法", "离子选择电极法"),
    "ARSENAZO": ("偶氮胂Ⅲ法", "比色法"),
    "OCPC": ("邻甲酚酞络合酮法", "比色法"),
    "NM-BAPTA": ("NM-BAPTA法", "比色法"),
    "HK": ("己糖激酶法", "酶法"),
    "GOD-POD": ("葡萄糖氧化酶法", "酶法"),
    "UREASE-GLDH": ("脲酶-谷氨酸脱氢酶法", "酶法"),
    "SOX": ("肌氨酸氧化酶法", "酶法"),
    "JAFFE": ("苦味酸速率法(Jaffe)", "化学法"),
    "URICASE-POD": ("尿酸酶-过氧化物酶法", "酶法"),
    "BIURET": ("双缩脲法", "比色法"),
    "BCG": ("溴甲酚绿法", "染料结合法"),
    "BCP": ("溴甲酚紫法", "染料结合法"),
    "CHOD-PAP": ("胆固醇氧化酶-过氧化物酶法", "酶法"),
    "GPO-PAP": ("甘油磷酸氧化酶-过氧化物酶法", "酶法"),
    "IFCC-RATE": ("IFCC推荐速率法", "速率法"),
}

# The method every reagent maker uses unless overridden below.
COMMON_METHOD = {
    "K": "ISE-IND", "Na": "ISE-IND", "Cl": "ISE-IND", "Ca": "ARSENAZO", "GLU": "HK",
    "UREA": "UREASE-GLDH", "CREA": "SOX", "UA": "URICASE-POD", "TP": "BIURET", "ALB": "BCG",
    "TC": "CHOD-PAP", "TG": "GPO-PAP", "ALT": "IFCC-RATE", "AST": "IFCC-RATE",
}
MAKER_METHOD = {
    "罗氏": {"Ca": "NM-BAPTA"},
    "贝克曼库尔特": {"CREA": "JAFFE"},
    "西门子": {"ALB": "BCP"},
    "科华": {"GLU": "GOD-POD", "Ca": "OCPC", "CREA": "JAFFE"},
}
# Small, real method-dependent differences on QC material (fraction of the true value).
METHOD_BIAS = {("CREA", "JAFFE"): 0.02, ("ALB", "BCP"): -0.015, ("GLU", "GOD-POD"): -0.008}


@dataclass(frozen=True)
class AnalyserModel:
    """A chemistry analyser model and the serial prefix its maker prints."""

    maker: str
    model: str
    serial_prefix: str


ROCHE_C702 = AnalyserModel("罗氏", "cobas c702", "C702-")
ROCHE_C501 = AnalyserModel("罗氏", "cobas c501", "C501-")
BECKMAN_AU5800 = AnalyserModel("贝克曼库尔特", "AU5800", "AU58-")
BECKMAN_AU680 = AnalyserModel("贝克曼库尔特", "AU680", "AU68-")
SIEMENS_ATELLICA = AnalyserModel("西门子", "Atellica CH", "ACH-")
SIEMENS_ADVIA = AnalyserModel("西门子", "ADVIA 2400", "AD24-")
ABBOTT_ALINITY = AnalyserModel("雅培", "Alinity c", "AC-")
ABBOTT_C16000 = AnalyserModel("雅培", "ARCHITECT c16000", "C16-")
MINDRAY_BS2000M = AnalyserModel("迈瑞", "BS-2000M", "BS2K-")
MINDRAY_BS800 = AnalyserModel("迈瑞", "BS-800", "BS8-")

# Tertiary labs: (main analyser, emergency analyser); others: one analyser.
TERTIARY_ANALYSERS = (
    (ROCHE_C702, ROCHE_C501), (BECKMAN_AU5800, BECKMAN_AU680), (SIEMENS_ATELLICA, SIEMENS_ADVIA),
    (ABBOTT_ALINITY, ABBOTT_C16000), (ROCHE_C702, ROCHE_C501), (MINDRAY_BS2000M, MINDRAY_BS800),
    (BECKMAN_AU5800, BECKMAN_AU680), (ABBOTT_C16000, ABBOTT_ALINITY),
)
SECONDARY_ANALYSERS = (ROCHE_C501, BECKMAN_AU680, SIEMENS_ADVIA, ABBOTT_C16000, MINDRAY_BS2000M,
                       MINDRAY_BS800)
PRIMARY_ANALYSERS = (MINDRAY_BS800, BECKMAN_AU680, MINDRAY_BS800, ROCHE_C501)

THIRD_PARTY_REAGENTS = ("迈瑞", "科华", "利德曼", "九强")
# Analytes a lab typically moves to a third-party reagent (never the ISE module).
THIRD_PARTY_ANALYTES = ("GLU", "UREA", "CREA", "UA", "TC", "TG", "ALT", "AST")

CALIBRATORS = {
    "罗氏": "C.f.a.s. 通用校准品",
    "贝克曼库尔特": "System Calibrator 系统校准品",
    "西门子": "CHEM CAL 生化校准品",
    "雅培": "Multiconstituent Calibrator 多项校准品",
    "迈瑞": "复合校准品",
    "科华": "复合校准品",
    "利德曼": "生化复合校准品",
    "九强": "复合校准品",
}
ISE_CALIBRATOR = "ISE 高低值标准液"


@dataclass(frozen=True)
class LotDef:
    """A QC material lot with two levels."""

    key: str
    maker: str
    material: str
    lot_number: str
    expiry_offset_days: int


LOTS: tuple[LotDef, ...] = (
    LotDef(LOT_MAIN, "Bio-Rad", "Lyphochek Assayed Chemistry Control 定值生化质控品", "26440", 420),
    LotDef(LOT_RANDOX, "Randox", "Assayed Chemistry Premium Plus 定值生化质控品", "1463UN", 300),
    LotDef(LOT_NEW, "Bio-Rad", "Lyphochek Assayed Chemistry Control 定值生化质控品", "26450", 690),
)
LEVEL_NAMES = ("水平1（正常值）", "水平2（病理值）")
