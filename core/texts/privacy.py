"""Texts of /export and /forget_me."""

EN = {
    "cmd.export": "Get all your data as a file",
    "cmd.forget_me": "Erase your data",
    "erased_user": "erased user",
    "privacy.export.preparing": "📦 Collecting your data…",
    "privacy.export.caption": "Everything this bot stores about you (JSON).",
    "privacy.forget.ask": (
        "<b>Erase your data?</b>\n"
        "Erased: your profile (Telegram id, username, names, language), the text, places and "
        "files of your requests, your comments, notes and messages, broadcasts you wrote, your "
        "drafts and recent places.\n"
        "Kept, linked to nobody: that your requests existed, with their status, priority and "
        "dates (for the statistics).\n"
        "This cannot be undone. /export first if you want a copy."
    ),
    "privacy.forget.confirm": "🗑 Erase",
    "privacy.forget.cancel": "Keep my data",
    "privacy.forget.kept": "Nothing was erased.",
    "privacy.forget.erasing": "🗑 Erasing your data…",
    "privacy.erased": (
        "Your data is erased. This is the last message from me; /start makes a new profile."
    ),
}

RU = {
    "cmd.export": "Получить все свои данные файлом",
    "cmd.forget_me": "Удалить свои данные",
    "erased_user": "удалённый пользователь",
    "privacy.export.preparing": "📦 Собираю ваши данные…",
    "privacy.export.caption": "Всё, что бот хранит о вас (JSON).",
    "privacy.forget.ask": (
        "<b>Удалить ваши данные?</b>\n"
        "Удалим: профиль (Telegram id, имя пользователя, имена, язык), текст, места и файлы "
        "ваших заявок, ваши комментарии, заметки и сообщения, ваши рассылки, черновики и "
        "недавние места.\n"
        "Останется, без связи с кем-либо: что ваши заявки были, с их статусом, приоритетом и "
        "датами (для статистики).\n"
        "Это нельзя отменить. Сначала /export, если нужна копия."
    ),
    "privacy.forget.confirm": "🗑 Удалить",
    "privacy.forget.cancel": "Оставить данные",
    "privacy.forget.kept": "Ничего не удалено.",
    "privacy.forget.erasing": "🗑 Удаляю ваши данные…",
    "privacy.erased": (
        "Ваши данные удалены. Это моё последнее сообщение; /start создаст новый профиль."
    ),
}
