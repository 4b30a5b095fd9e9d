"""Telegram for the worker: the pure text rules (:mod:`.text`), the reply channel over the Bot API
(:mod:`.channel`) and media downloads through getFile (:mod:`.media`)."""

from worker.telegram.channel import TelegramChannel
from worker.telegram.media import TelegramMedia

__all__ = ["TelegramChannel", "TelegramMedia"]
