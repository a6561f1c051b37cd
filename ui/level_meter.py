"""A horizontal level meter in dBFS, with a short peak hold."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

FLOOR_DBFS = -60.0


class LevelMeter(QWidget):
    def __init__(self, label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.level_dbfs = FLOOR_DBFS
        self.peak_dbfs = FLOOR_DBFS
        self.setMinimumHeight(14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(f"{label} level")
        self.setAccessibleName(f"{label} level")

    def sizeHint(self) -> QSize:
        return QSize(160, 16)

    def set_level(self, dbfs: float) -> None:
        level = max(FLOOR_DBFS, min(0.0, dbfs))
        self.level_dbfs = level
        self.peak_dbfs = max(level, self.peak_dbfs - 1.5)
        self.update()

    @property
    def fraction(self) -> float:
        return (self.level_dbfs - FLOOR_DBFS) / -FLOOR_DBFS

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(self.palette().mid().color())
        painter.setBrush(self.palette().base())
        painter.drawRoundedRect(rect, 3, 3)
        fill = QRectF(rect)
        fill.setWidth(rect.width() * self.fraction)
        color = QColor("#3aa655") if self.level_dbfs < -12 else QColor("#e0a800")
        if self.level_dbfs > -3:
            color = QColor("#d9534f")
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(fill, 3, 3)
        peak_x = rect.left() + rect.width() * (self.peak_dbfs - FLOOR_DBFS) / -FLOOR_DBFS
        painter.setPen(self.palette().text().color())
        painter.drawLine(int(peak_x), int(rect.top()) + 2, int(peak_x), int(rect.bottom()) - 2)
        painter.drawText(rect.adjusted(4, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, self.label)
        painter.end()
