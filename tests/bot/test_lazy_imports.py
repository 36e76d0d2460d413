"""What the bot defers at start (Recognizers-Text, the card models) is really deferred, and still works when used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import app
loaded_at_start = sorted(m for m in sys.modules if m.split(".")[0] in ("emoji", "regex", "microsoft_teams", "pydantic")
                         or m.startswith(("recognizers_date_time.", "recognizers_number.", "recognizers_choice.")))
from botbuilder.dialogs.prompts.number_prompt import recognize_number
from botbuilder.dialogs.prompts.datetime_prompt import recognize_datetime
from botbuilder.dialogs.prompts.confirm_prompt import recognize_boolean
from botbuilder.dialogs.choices.choice_recognizers import ChoiceRecognizers
import cards
print(json.dumps({
    "loaded_at_start": loaded_at_start,
    "number": recognize_number("twenty three", "en-us")[0].resolution["value"],
    "boolean": recognize_boolean("yes please", "en-us")[0].resolution["value"],
    "datetime": recognize_datetime("tomorrow at 5pm", "en-us")[0].type_name,
    "choice": ChoiceRecognizers.recognize_choices("the second one", ["a", "b"])[0].resolution.value,
    "card": cards.notice_card("Cancelled", "Nothing was changed.")["version"],
    "real_text_module": type(sys.modules["recognizers_text"]).__name__,
}))
"""


def test_recognizers_and_card_models_load_on_first_use_only() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded_at_start"] == []
    assert result["number"] == "23" and result["boolean"] is True and result["datetime"] == "datetimeV2.datetime"
    assert result["choice"] == "b" and result["card"] == "1.5" and result["real_text_module"] == "module"
