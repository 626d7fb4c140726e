"""Texts of areas: places grouped by building or entrance, and the staff subscribed to each."""

EN = {
    "areas.title": "<b>Areas</b>",
    "areas.line": "{mark} <b>{name}</b>: {places} ({staff})",
    "areas.staff": "{count} staff",
    "areas.nobody": "nobody subscribed",
    "areas.explain": (
        "New requests whose place starts with an area's places go to the staff subscribed to"
        " it; a place no area covers, or an area nobody covers, goes to all staff."
        " Press an area to subscribe or unsubscribe."
    ),
    "areas.admin_usage": "Admins: /area Name: place, place defines an area; /area Name: deletes it.",
    "areas.empty": "No areas yet: every new request goes to all staff.",
    "areas.subscribed": "✅ {name}",
    "areas.not_subscribed": "➕ {name}",
    "area.usage": (
        "Usage: /area Name: place, place\n"
        "For example <code>/area Building A: A-, Block A</code> groups every place that starts"
        ' with "A-" or "Block A". <code>/area Building A:</code> deletes the area.'
    ),
    "area.saved": "Area <b>{name}</b>: {places}.",
    "area.deleted": "Area <b>{name}</b> deleted; its staff get requests from everywhere again.",
    "area.unknown": "There is no area {name}.",
    "area.too_many": "There are {max} areas already; delete one first.",
    "area.gone": "That area no longer exists.",
    "area.too_long": (
        "An area's name has at most {name_max} characters, and it groups at most {places_max}"
        " places of at most {place_max} characters each."
    ),
    "cmd.areas": "Areas you get requests from (staff)",
    "cmd.area": "Define an area (admins)",
}

RU = {
    "areas.title": "<b>Зоны</b>",
    "areas.line": "{mark} <b>{name}</b>: {places} ({staff})",
    "areas.staff": "сотрудников: {count}",
    "areas.nobody": "никто не подписан",
    "areas.explain": (
        "Новые заявки, место которых начинается с мест зоны, получают подписанные на неё"
        " сотрудники; место вне зон или зона без подписчиков: все сотрудники."
        " Нажмите на зону, чтобы подписаться или отписаться."
    ),
    "areas.admin_usage": "Администраторам: /area Название: место, место задаёт зону; /area Название: удаляет её.",
    "areas.empty": "Зон пока нет: каждая новая заявка приходит всем сотрудникам.",
    "areas.subscribed": "✅ {name}",
    "areas.not_subscribed": "➕ {name}",
    "area.usage": (
        "Использование: /area Название: место, место\n"
        "Например, <code>/area Корпус А: А-, Блок А</code> объединяет места, начинающиеся с"
        " «А-» или «Блок А». <code>/area Корпус А:</code> удаляет зону."
    ),
    "area.saved": "Зона <b>{name}</b>: {places}.",
    "area.deleted": "Зона <b>{name}</b> удалена; её сотрудники снова получают заявки отовсюду.",
    "area.unknown": "Зоны {name} нет.",
    "area.too_many": "Зон уже {max}; сначала удалите одну.",
    "area.gone": "Этой зоны больше нет.",
    "area.too_long": (
        "Название зоны: не длиннее {name_max} символов; в зоне не больше {places_max} мест"
        " по {place_max} символов."
    ),
    "cmd.areas": "Зоны, из которых вы получаете заявки (сотрудники)",
    "cmd.area": "Задать зону (админы)",
}
