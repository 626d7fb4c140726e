"""Texts of the /new dialog (bot side).

Values in braces are filled by `t(...)`, which HTML-escapes them (user text included).
"""

EN: dict[str, str] = {
    "menu.new": "📝 New request",
    "new.ask_title": (
        "<b>New request</b> · step 1 of 6\n"
        "What is the problem? Send a short title (up to {max} characters).\n"
        "Send /cancel to stop at any time."
    ),
    "new.ask_description": (
        "Step 2 of 6\nDescribe the problem: what happened, since when (up to {max} characters)."
    ),
    "new.ask_location": (
        "Step 3 of 6\nWhere is it? Send the place: flat, floor, entrance, room "
        "(up to {max} characters)."
    ),
    "new.ask_location_recent": (
        "Step 3 of 6\nWhere is it? Send the place (up to {max} characters) "
        "or choose one you used recently."
    ),
    "new.ask_priority": "Step 4 of 6\nHow urgent is it? Choose the priority.",
    "new.ask_attachments": (
        "Step 5 of 6\nAdd photos or documents if they help: up to {max} files, "
        "{max_mb} MB each. No files? Press <b>Skip</b>."
    ),
    "new.attached": (
        "Step 5 of 6\nAttached: {count} of {max}. Send more or press <b>Continue</b>."
    ),
    "new.summary": (
        "Step 6 of 6 · <b>Check your request</b>\n\n"
        "<b>Title:</b> {title}\n"
        "<b>Description:</b> {description}\n"
        "<b>Location:</b> {location}\n"
        "<b>Priority:</b> {priority}\n"
        "<b>Attachments:</b> {count}\n\n"
        "Press <b>Submit</b> to send it to the staff."
    ),
    "new.priority.low": "Low",
    "new.priority.normal": "Normal",
    "new.priority.high": "High",
    "new.priority.urgent": "Urgent",
    "new.priority_chosen": "Priority: {priority}",
    "new.button.skip": "Skip",
    "new.button.continue": "Continue",
    "new.button.submit": "✅ Submit",
    "new.button.cancel": "✖️ Cancel",
    "new.error.title_empty": "The title is empty.",
    "new.error.title_too_long": ("The title is too long: {length} characters, the limit is {max}."),
    "new.error.description_empty": "The description is empty.",
    "new.error.description_too_long": (
        "The description is too long: {length} characters, the limit is {max}."
    ),
    "new.error.location_empty": "The location is empty.",
    "new.error.location_too_long": (
        "The location is too long: {length} characters, the limit is {max}."
    ),
    "new.error.text_expected": "I need a text message here.",
    "new.error.priority_expected": "Please choose the priority with one of the buttons.",
    "new.error.files_expected": (
        "Here I take photos and documents. Send a file, or press <b>Skip</b> / <b>Continue</b>."
    ),
    "new.error.too_many_files": ("That file was not added: at most {max} files per request."),
    "new.error.file_too_big": (
        "That file was not added: it is {size_mb} MB, the limit is {max_mb} MB."
    ),
    "new.error.summary_expected": (
        "Please press <b>Submit</b> to send the request or <b>Cancel</b> to drop it."
    ),
    "new.stale": "This draft is no longer active. Send /new to start a new request.",
    "new.cancelled": "Cancelled: the request was not sent.",
    "new.nothing_to_cancel": "There is nothing to cancel.",
    "new.sending": "⏳ Sending your request…",
}

RU: dict[str, str] = {
    "menu.new": "📝 Новая заявка",
    "new.ask_title": (
        "<b>Новая заявка</b> · шаг 1 из 6\n"
        "Что случилось? Напишите коротко, в чём проблема (до {max} символов).\n"
        "Отправьте /cancel, чтобы прервать в любой момент."
    ),
    "new.ask_description": (
        "Шаг 2 из 6\nОпишите проблему подробнее: что произошло и с каких пор (до {max} символов)."
    ),
    "new.ask_location": (
        "Шаг 3 из 6\nГде это? Укажите место: квартира, этаж, подъезд, помещение "
        "(до {max} символов)."
    ),
    "new.ask_location_recent": (
        "Шаг 3 из 6\nГде это? Укажите место (до {max} символов) или выберите одно из недавних."
    ),
    "new.ask_priority": "Шаг 4 из 6\nНасколько это срочно? Выберите приоритет.",
    "new.ask_attachments": (
        "Шаг 5 из 6\nПриложите фото или документы, если они помогут: до {max} файлов, "
        "не больше {max_mb} МБ каждый. Без файлов? Нажмите <b>Пропустить</b>."
    ),
    "new.attached": (
        "Шаг 5 из 6\nПриложено: {count} из {max}. Отправьте ещё или нажмите <b>Дальше</b>."
    ),
    "new.summary": (
        "Шаг 6 из 6 · <b>Проверьте заявку</b>\n\n"
        "<b>Тема:</b> {title}\n"
        "<b>Описание:</b> {description}\n"
        "<b>Место:</b> {location}\n"
        "<b>Приоритет:</b> {priority}\n"
        "<b>Вложения:</b> {count}\n\n"
        "Нажмите <b>Отправить</b>, чтобы передать заявку сотрудникам."
    ),
    "new.priority.low": "Низкий",
    "new.priority.normal": "Обычный",
    "new.priority.high": "Высокий",
    "new.priority.urgent": "Срочный",
    "new.priority_chosen": "Приоритет: {priority}",
    "new.button.skip": "Пропустить",
    "new.button.continue": "Дальше",
    "new.button.submit": "✅ Отправить",
    "new.button.cancel": "✖️ Отменить",
    "new.error.title_empty": "Тема пустая.",
    "new.error.title_too_long": ("Тема слишком длинная: {length} симв., а можно не больше {max}."),
    "new.error.description_empty": "Описание пустое.",
    "new.error.description_too_long": (
        "Описание слишком длинное: {length} симв., а можно не больше {max}."
    ),
    "new.error.location_empty": "Место не указано.",
    "new.error.location_too_long": (
        "Описание места слишком длинное: {length} симв., а можно не больше {max}."
    ),
    "new.error.text_expected": "Здесь нужно текстовое сообщение.",
    "new.error.priority_expected": "Выберите приоритет одной из кнопок.",
    "new.error.files_expected": (
        "На этом шаге я принимаю фото и документы. Отправьте файл или нажмите "
        "<b>Пропустить</b> / <b>Дальше</b>."
    ),
    "new.error.too_many_files": (
        "Этот файл не добавлен: к заявке можно приложить не больше {max} файлов."
    ),
    "new.error.file_too_big": (
        "Этот файл не добавлен: его размер {size_mb} МБ, а можно не больше {max_mb} МБ."
    ),
    "new.error.summary_expected": (
        "Нажмите <b>Отправить</b>, чтобы передать заявку, или <b>Отменить</b>, чтобы её удалить."
    ),
    "new.stale": "Этот черновик уже неактуален. Отправьте /new, чтобы создать новую заявку.",
    "new.cancelled": "Отменено: заявка не отправлена.",
    "new.nothing_to_cancel": "Отменять нечего.",
    "new.sending": "⏳ Отправляю заявку…",
}
