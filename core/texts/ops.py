"""Texts of the system's own failures, as users see them."""

EN = {
    "consistency.found": "🩺 The nightly consistency check found {total} problem(s): {kinds}.\nDetails and safe repairs: <code>zavhoz maintenance consistency --repair</code>",
    "command.failed": (
        "Sorry, I could not do that: something in it went wrong on our side. "
        "It has been recorded and the team will look at it; you may try again later."
    ),
}

RU = {
    "consistency.found": "🩺 Ночная проверка целостности нашла проблем: {total} ({kinds}).\nПодробности и безопасные исправления: <code>zavhoz maintenance consistency --repair</code>",
    "command.failed": (
        "Извините, не получилось: что-то пошло не так на нашей стороне. "
        "Мы это записали и разберёмся; попробуйте ещё раз позже."
    ),
}
