"""Import every model module so the metadata (and Alembic autogenerate) sees all tables."""

from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.analytics.models import InstrumentComparison
from qcwx.audit.models import AuditLog
from qcwx.catalog.codes import AnalyteLoinc, UnitCode
from qcwx.catalog.models import (
    Analyte,
    Calibrator,
    Instrument,
    Method,
    QcLevel,
    QcLot,
    QcMaterial,
    QualitySpec,
    Reagent,
    TestSystem,
)
from qcwx.ingest.models import ColumnMapping, LevelCodeMapping, TestCodeMapping, UploadBatch
from qcwx.insights.models import TestSystemChange
from qcwx.iqc.models import (
    ControlLimit,
    CorrectiveAction,
    QcResult,
    QcRun,
    RuleSet,
    Submission,
    Violation,
)
from qcwx.lots.models import DistributedLot, LotAssignment, LotChangeover, MakerTarget
from qcwx.opendata.models import OpenDataExport, ResearchApiKey
from qcwx.orgs.models import ApiKey, Hospital, Lab, Region, User
from qcwx.peer.models import (
    PeerLabDay,
    PeerSnapshot,
    PeerSnapshotLab,
    PeerTsState,
    SavedGrouping,
)
from qcwx.recognition.models import RecognitionCriteriaVersion, RecognitionOverride
from qcwx.reports.comments import ExpertComment
from qcwx.reports.models import PublishedReport, ShareLink
from qcwx.wechat.models import SubscribeConsent, WechatInvite

__all__ = [
    "AlertDelivery", "ApiKey", "ColumnMapping", "LevelCodeMapping", "SubscribeConsent",
    "TestCodeMapping", "UploadBatch", "WechatInvite",
    "AnalyteLoinc", "UnitCode", "OpenDataExport", "ResearchApiKey",
    "Analyte", "AuditLog", "Calibrator", "ControlLimit", "CorrectiveAction", "Hospital",
    "Instrument", "Lab", "Method", "OutboxMessage", "QcLevel", "QcLot", "QcMaterial", "QcResult",
    "PublishedReport", "QcRun", "QualitySpec", "Reagent", "Region", "RuleSet", "ShareLink",
    "Submission",
    "TestSystem", "TestSystemChange", "User", "Violation",
    "DistributedLot", "LotAssignment", "LotChangeover", "MakerTarget",
    "PeerLabDay", "PeerSnapshot", "PeerSnapshotLab", "PeerTsState", "SavedGrouping",
    "RecognitionCriteriaVersion", "RecognitionOverride", "ExpertComment",
    "InstrumentComparison",
]
