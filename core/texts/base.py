"""Texts of the foundation: welcome, help, generic errors and refusals of bad input."""

EN = {
    "welcome": (
        "Hello, <b>{name}</b>! I am the request desk of your building.\n"
        "Report a problem and follow it here; the staff get it at once."
    ),
    "welcome_staff": "You are <b>{role}</b> here.",
    "role.resident": "a resident",
    "role.staff": "staff",
    "role.admin": "an admin",
    "menu.help": "❓ Help",
    "help": (
        "<b>What I can do</b>\n"
        "/new: report a problem\n"
        "/my: your requests and their status\n"
        "#42 or /r 42: request 42's card\n"
        "/cancel: stop what you are doing\n"
        "/start: the main menu\n"
        "/help: this message\n"
        "/export: all your data as a file; /forget_me: erase it\n\n"
        "<b>Staff</b>: /queue [place] open requests, /mine assigned to you, /find words, /areas the places you get requests from\n"
        "<b>Admins</b>: /grant &lt;id or @username&gt; staff|admin, /revoke &lt;id or @username&gt;, /staff, /area Name: place, place, /broadcast, /report [today|week|month]\n\n"
        "Staff and admins are named by an admin with /grant; the first admins are set by whoever runs the bot (ADMIN_IDS)."
    ),
    "unknown": "I did not understand that. Send /help to see what I can do.",
    "busy": "Sorry, something went wrong on our side. Please try again in a minute.",
    "placeholder": "Choose an action",
    "cmd.start": "Main menu",
    "cmd.help": "What this bot can do",
    "cmd.new": "Report a problem",
    "cmd.cancel": "Stop what you are doing",
    "group.private_only": "Let's talk in private, where only you see my answers: open @{bot}",
    "input.bad_user": "{target} is neither a Telegram user id nor an @username.",
    "too_fast.new": "You have sent many requests lately. You can send the next one in {wait}; your draft is kept.",
    "too_fast.comments": "You have written many comments lately. You can write the next one in {wait}.",
    "too_fast.commands": "Too many commands at once. Please wait {wait} and try again.",
}

RU = {
    "welcome": (
        "Здравствуйте, <b>{name}</b>! Я служба заявок вашего дома.\n"
        "Сообщите о проблеме и следите за ней здесь; сотрудники получат её сразу."
    ),
    "welcome_staff": "Ваша роль: <b>{role}</b>.",
    "role.resident": "житель",
    "role.staff": "сотрудник",
    "role.admin": "администратор",
    "menu.help": "❓ Помощь",
    "help": (
        "<b>Что я умею</b>\n"
        "/new: сообщить о проблеме\n"
        "/my: ваши заявки и их статус\n"
        "#42 или /r 42: карточка заявки 42\n"
        "/cancel: прервать текущее действие\n"
        "/start: главное меню\n"
        "/help: это сообщение\n"
        "/export: все ваши данные файлом; /forget_me: удалить их\n\n"
        "<b>Сотрудникам</b>: /queue [место] открытые заявки, /mine назначенные вам, /find слова, /areas места, из которых вы получаете заявки\n"
        "<b>Администраторам</b>: /grant &lt;id или @username&gt; staff|admin, /revoke &lt;id или @username&gt;, /staff, /area Название: место, место, /broadcast, /report [today|week|month]\n\n"
        "Сотрудников и администраторов назначает администратор командой /grant; первых администраторов задаёт тот, кто запускает бота (ADMIN_IDS)."
    ),
    "unknown": "Я не понял. Отправьте /help, чтобы увидеть, что я умею.",
    "busy": "Извините, у нас что-то пошло не так. Попробуйте через минуту.",
    "placeholder": "Выберите действие",
    "cmd.start": "Главное меню",
    "cmd.help": "Что умеет бот",
    "cmd.new": "Сообщить о проблеме",
    "cmd.cancel": "Прервать текущее действие",
    "group.private_only": (
        "Давайте продолжим в личном чате, где мои ответы видны только вам: откройте @{bot}"
    ),
    "input.bad_user": "{target}: это не Telegram id пользователя и не @username.",
    "too_fast.new": "Вы недавно отправили много заявок. Следующую можно отправить через {wait}; черновик сохранён.",
    "too_fast.comments": "Вы недавно написали много комментариев. Следующий можно написать через {wait}.",
    "too_fast.commands": "Слишком много команд подряд. Подождите {wait} и попробуйте снова.",
}
