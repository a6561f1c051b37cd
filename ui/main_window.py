"""The main window: transcript, meters, state, pickers, text box and talk controls.

Widgets only: the window shows what it is told and sends the user's intents as signals; the app
layer decides what they mean.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from facts import VOICES
from ui.camera_view import CameraView
from ui.conversation_list import ConversationList
from ui.level_meter import LevelMeter
from ui.pending_turn import PendingTurnLabel
from ui.problems import ProblemList
from ui.screen_view import ScreenView
from ui.talk_key import TalkKey
from ui.tool_prompt import ToolPrompt
from ui.transcript import TranscriptView
from ui.tray import Tray

STATE_COLORS = {
    "idle": "#7f8c8d",
    "listening": "#27ae60",
    "user speaking": "#2a6fdb",
    "thinking": "#8e44ad",
    "assistant speaking": "#e67e22",
    "interrupted": "#c0392b",
    "loading": "#7f8c8d",
}
VOICE_ITEMS = [("Persona's voice", ""), *[(voice.capitalize(), voice) for voice in VOICES]]
MODE_ITEMS = [("Hands-free", "hands-free"), ("Push-to-talk", "push-to-talk")]
RESPONSIVENESS_ITEMS = [  # how soon a pause ends a hands-free turn (audio_io.end_of_turn)
    ("Eager", "eager", "answers at the first pause that sounds finished"),
    ("Balanced", "balanced", "waits a little longer when unsure"),
    ("Patient", "patient", "lets you pause and think"),
]
DEFAULT_DEVICE = "System default"
SHORTCUTS = [
    ("Enter", "send the typed message"),
    ("Space (held, anywhere but a box you type in)", "push to talk"),
    ("Esc", "stop the assistant speaking"),
    ("Ctrl+M", "mute or unmute the microphone"),
    ("Ctrl+L", "focus the text box"),
    ("Ctrl+N", "new conversation"),
    ("Ctrl+E", "export the conversation"),
    ("Ctrl+H", "show or hide past conversations"),
    ("Ctrl+P", "edit personas"),
    ("Ctrl+Q", "quit"),
]


class MainWindow(QMainWindow):
    text_submitted = Signal(str)
    stop_requested = Signal()
    talk_pressed = Signal()
    talk_released = Signal()
    mute_toggled = Signal(bool)
    mode_chosen = Signal(str)
    responsiveness_chosen = Signal(str)
    voice_chosen = Signal(str)
    persona_chosen = Signal(str)
    input_device_chosen = Signal(str)
    output_device_chosen = Signal(str)
    edit_personas_requested = Signal()
    export_requested = Signal()
    new_conversation_requested = Signal()
    cancel_load_requested = Signal()
    closing = Signal()
    settings_requested = Signal()
    about_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Omni Desk")
        self.resize(900, 680)
        self.talk_key = TalkKey(self)
        self.talk_key.pressed.connect(self.talk_pressed)
        self.talk_key.released.connect(self.talk_released)
        self._audio_enabled = True
        self._updating = False
        self._build()
        self._build_menu()
        self.tray = Tray(self)
        self.tray.mute_action.toggled.connect(self.mute_button.setChecked)
        self.talk_pressed.connect(lambda: self.tray.set_state(self.state_label.text(), talking=True))
        self.talk_released.connect(lambda: self.tray.set_state(self.state_label.text()))
        self.set_state("loading")
        self.set_mode("hands-free")

    # -- layout ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        root = QWidget(self)
        layout = QVBoxLayout(root)
        self.error_banner = ProblemList(root)  # every problem of the session until dismissed
        layout.addWidget(self.error_banner)
        self.tool_prompt = ToolPrompt(root)  # a tool that acts waits for the user's yes or no (issue 15)
        layout.addWidget(self.tool_prompt)
        self._build_pickers(root, layout)
        middle = QHBoxLayout()
        self.transcript = TranscriptView(root)
        middle.addWidget(self.transcript, 1)
        self.camera_view = CameraView(root)
        self.screen_view = ScreenView(root)  # screen sharing, with its indicator (issue 15)
        side = QVBoxLayout()
        side.addWidget(self.camera_view)
        side.addWidget(self.screen_view)
        middle.addLayout(side)
        layout.addLayout(middle, 1)
        self._build_indicators(root, layout)
        self._build_entry(root, layout)
        self.setCentralWidget(root)
        self.conversations_dock = QDockWidget("Past conversations", self)
        self.conversations_dock.setObjectName("pastConversations")
        self.conversation_list = ConversationList(self.conversations_dock)
        self.conversations_dock.setWidget(self.conversation_list)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.conversations_dock)
        self.conversations_dock.hide()
        self._build_status_bar()
        self._connect_controls()

    def _build_pickers(self, root: QWidget, layout: QVBoxLayout) -> None:
        pickers = QHBoxLayout()
        self.persona_box = self._combo("Persona", pickers)
        self.edit_personas_button = QPushButton("Edit…", root)
        self.edit_personas_button.setToolTip("Create, edit and delete personas (Ctrl+P)")
        pickers.addWidget(self.edit_personas_button)
        self.voice_box = self._combo("Voice", pickers)
        for label, voice in VOICE_ITEMS:
            self.voice_box.addItem(label, voice)
        self.mode_box = self._combo("Mode", pickers)
        for label, mode in MODE_ITEMS:
            self.mode_box.addItem(label, mode)
        pickers.addStretch(1)
        layout.addLayout(pickers)

        devices = QHBoxLayout()
        self.input_box = self._combo("Microphone", devices)
        self.output_box = self._combo("Speaker", devices)
        for box in (self.input_box, self.output_box):
            box.addItem(DEFAULT_DEVICE, "")
            box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            # a long device name must not set the window's smallest width
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(12)
        self.responsiveness_box = self._combo("Answer", devices)
        for index, (label, value, tip) in enumerate(RESPONSIVENESS_ITEMS):
            self.responsiveness_box.addItem(label, value)
            self.responsiveness_box.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        layout.addLayout(devices)

    def _build_indicators(self, root: QWidget, layout: QVBoxLayout) -> None:
        indicators = QHBoxLayout()
        self.state_label = QLabel(root)
        self.state_label.setObjectName("stateIndicator")
        self.state_label.setMinimumWidth(150)
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        indicators.addWidget(self.state_label)
        self.pending_label = PendingTurnLabel(root)
        indicators.addWidget(self.pending_label)
        self.input_meter = LevelMeter("mic", root)
        self.output_meter = LevelMeter("speaker", root)
        indicators.addWidget(self.input_meter, 1)
        indicators.addWidget(self.output_meter, 1)
        self.latency_label = QLabel("", root)
        self.latency_label.setObjectName("latency")
        self.latency_label.setToolTip(
            "end of your speech → first text, → first audio; text tokens per second"
        )
        indicators.addWidget(self.latency_label)
        layout.addLayout(indicators)

    def _build_entry(self, root: QWidget, layout: QVBoxLayout) -> None:
        entry = QHBoxLayout()
        self.text_box = QLineEdit(root)
        self.text_box.setPlaceholderText("Type a message and press Enter")
        self.text_box.setAccessibleName("Message")
        self.send_button = QPushButton("Send", root)
        self.snapshot_box = QCheckBox("Attach camera frame", root)
        self.snapshot_box.setToolTip("Send the camera's current picture with the next typed message")
        self.talk_button = QPushButton("Hold to talk", root)
        self.talk_button.setToolTip(
            "Hold this button, or the space bar anywhere but the text box, while you speak"
        )
        self.mute_button = QPushButton("Mute mic", root)
        self.mute_button.setCheckable(True)
        self.stop_button = QPushButton("Stop speaking", root)
        self.stop_button.setToolTip("Stop the reply now (Esc)")
        for widget in (
            self.text_box, self.snapshot_box, self.send_button, self.talk_button, self.mute_button,
            self.stop_button,
        ):  # fmt: skip
            entry.addWidget(widget, 1 if widget is self.text_box else 0)
        layout.addLayout(entry)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.progress_label = QLabel("", self)
        self.cancel_load_button = QPushButton("Cancel loading", self)
        self.cancel_load_button.hide()
        self.model_label = QLabel("no model", self)
        self.memory_label = QLabel("", self)
        status.addWidget(self.progress_label, 1)
        status.addWidget(self.cancel_load_button)
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.memory_label)

    def _connect_controls(self) -> None:
        self.text_box.returnPressed.connect(self._submit)
        self.send_button.clicked.connect(self._submit)
        self.talk_button.pressed.connect(self.talk_pressed)
        self.talk_button.released.connect(self.talk_released)
        self.mute_button.toggled.connect(self._mute_toggled)
        self.stop_button.clicked.connect(self.stop_requested)
        self.edit_personas_button.clicked.connect(self.edit_personas_requested)
        self.cancel_load_button.clicked.connect(self.cancel_load_requested)
        for box, signal in (
            (self.persona_box, self.persona_chosen),
            (self.voice_box, self.voice_chosen),
            (self.mode_box, self.mode_chosen),
            (self.responsiveness_box, self.responsiveness_chosen),
            (self.input_box, self.input_device_chosen),
            (self.output_box, self.output_device_chosen),
        ):
            box.activated.connect(lambda _index, box=box, signal=signal: signal.emit(box.currentData()))
        self.mode_chosen.connect(self.set_mode)

    def _combo(self, label: str, row: QHBoxLayout) -> QComboBox:
        caption = QLabel(label + ":", self)
        box = QComboBox(self)
        box.setAccessibleName(label)
        caption.setBuddy(box)
        row.addWidget(caption)
        row.addWidget(box)
        return box

    def _build_menu(self) -> None:
        def action(
            menu_name: str, text: str, shortcut: str | QKeySequence.StandardKey, slot: object
        ) -> QAction:
            menu = menus[menu_name]
            act = QAction(text, self)
            act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        bar = self.menuBar()
        menus = {name: bar.addMenu(name) for name in ("&Conversation", "&Edit", "&Help")}
        action("&Conversation", "&New conversation", "Ctrl+N", self.new_conversation_requested)
        action("&Conversation", "&Export…", "Ctrl+E", self.export_requested)
        past = self.conversations_dock.toggleViewAction()
        past.setText("&Past conversations")
        past.setShortcut(QKeySequence("Ctrl+H"))
        menus["&Conversation"].addAction(past)
        action("&Conversation", "&Stop speaking", "Esc", self.stop_requested)
        self.mute_action = action("&Conversation", "&Mute microphone", "Ctrl+M", self.mute_button.toggle)
        action("&Conversation", "&Quit", "Ctrl+Q", self.close)
        action("&Edit", "&Personas…", "Ctrl+P", self.edit_personas_requested)
        action("&Edit", "Focus the &text box", "Ctrl+L", self.text_box.setFocus)
        action("&Edit", "&Model settings…", "Ctrl+,", self.settings_requested)
        action("&Help", "&About Omni Desk", "", self.about_requested)
        action("&Help", "&Keyboard shortcuts", "F1", self._show_shortcuts)

    # -- intents --------------------------------------------------------------------------------------

    def _submit(self) -> None:
        text = self.text_box.text().strip()
        if text:
            self.text_box.clear()
            self.text_submitted.emit(text)

    def _mute_toggled(self, muted: bool) -> None:
        self.mute_button.setText("Unmute mic" if muted else "Mute mic")
        self.tray.set_muted(muted)
        self.mute_toggled.emit(muted)

    def _show_shortcuts(self) -> None:
        self.show_info("Keyboard shortcuts:\n" + "\n".join(f"{key}: {what}" for key, what in SHORTCUTS))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closing.emit()
        super().closeEvent(event)

    # -- what the app tells the window ----------------------------------------------------------------

    def set_state(self, state: str) -> None:
        color = STATE_COLORS.get(state, "#7f8c8d")
        self.state_label.setText(state)
        self.state_label.setStyleSheet(f"background:{color};color:white;border-radius:8px;padding:3px 10px")
        self.state_label.setProperty("state", state)
        self.tray.set_state(state)
        if state != "user speaking":
            self.pending_label.stop()

    def show_pending_turn(self, started_s: float, understood: bool = True) -> None:
        """The user is speaking since `started_s` (perf_counter): show the turn's length as it grows."""
        self.pending_label.start(started_s, understood)

    def set_levels(self, input_dbfs: float, output_dbfs: float) -> None:
        self.input_meter.set_level(input_dbfs)
        self.output_meter.set_level(output_dbfs)

    def show_latency(self, text: str) -> None:
        self.latency_label.setText(text)

    def show_error(self, message: str) -> None:
        """Listed until dismissed (an earlier problem is never hidden by a later one)."""
        self.error_banner.add(message)
        self.statusBar().showMessage(message.splitlines()[0] if message else "", 10_000)

    def show_info(self, text: str) -> None:
        """A note in the transcript (plain text)."""
        self.transcript.add_note(text)

    def info_text(self) -> str:
        """The notes shown so far, one a line."""
        return "\n".join(e.text for e in self.transcript.entries if e.role == "note")

    def show_progress(self, message: str, *, cancellable: bool = False) -> None:
        self.progress_label.setText(message)
        self.cancel_load_button.setVisible(cancellable)

    def set_model_status(self, text: str, tooltip: str = "") -> None:
        self.model_label.setText(text)
        self.model_label.setToolTip(tooltip)

    def set_memory(self, text: str) -> None:
        self.memory_label.setText(text)

    def set_personas(self, personas: list[tuple[str, str]], current: str) -> None:
        self._fill(self.persona_box, personas, current)

    def set_voice(self, voice: str) -> None:
        self._select(self.voice_box, voice)

    def set_mode(self, mode: str) -> None:
        self._select(self.mode_box, mode)
        self.talk_button.setEnabled(mode == "push-to-talk" and self._audio_enabled)

    def set_responsiveness(self, responsiveness: str) -> None:
        self._select(self.responsiveness_box, responsiveness)

    def set_muted(self, muted: bool) -> None:
        self.mute_button.setChecked(muted)

    def set_devices(
        self, inputs: list[str], outputs: list[str], current_input: str, current_output: str
    ) -> None:
        self._fill(self.input_box, [(DEFAULT_DEVICE, ""), *((n, n) for n in inputs)], current_input)
        self._fill(self.output_box, [(DEFAULT_DEVICE, ""), *((n, n) for n in outputs)], current_output)

    def set_audio_enabled(self, enabled: bool) -> None:
        """Text-only mode: no talking, no devices, no meters."""
        self._audio_enabled = enabled
        for widget in (
            self.mute_button, self.mode_box, self.input_box, self.output_box, self.input_meter,
            self.output_meter,
        ):  # fmt: skip
            widget.setEnabled(enabled)
        self.talk_button.setEnabled(enabled and self.mode_box.currentData() == "push-to-talk")

    def set_ready(self, ready: bool) -> None:
        self.send_button.setEnabled(ready)

    def geometry_state(self) -> QByteArray:
        return self.saveGeometry()

    def restore_geometry_state(self, data: QByteArray) -> bool:
        return bool(self.restoreGeometry(data))

    def _fill(self, box: QComboBox, items: list[tuple[str, str]], current: str) -> None:
        box.clear()
        for label, data in items:
            box.addItem(label, data)
        if current and box.findData(current) < 0:
            box.addItem(current, current)
        self._select(box, current)

    @staticmethod
    def _select(box: QComboBox, data: str) -> None:
        index = box.findData(data)
        if index >= 0:
            box.setCurrentIndex(index)
