"""The Telegram reply channel: the pure text rules (:mod:`.text`) and the channel over the Bot API (:mod:`.channel`)."""

from worker.telegram.channel import TelegramChannel

__all__ = ["TelegramChannel"]
