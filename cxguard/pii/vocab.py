"""The words of read-aloud numbers, and the words around them that tell what a number is.

Every table here is lower case; the tokenizer casefolds (after NFKC) before looking words up.
"""

from __future__ import annotations

import re

UNITS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "naught": "0", "nil": "0",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "niner": "9",
}  # fmt: skip
TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}  # fmt: skip
TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5", "sixty": "6",
    "seventy": "7", "eighty": "8", "ninety": "9",
}  # fmt: skip
WEAK = {"for": "4", "fore": "4", "to": "2", "too": "2", "won": "1", "ate": "8"}
"""Homophones Whisper writes for digits: they count only *between* two real digits, never at
a run's edges ("waiting for", "to" in ordinary speech start nothing)."""
LEAD_WEAK = frozenset({"oh", "o"})
"""Real zeros ("oh seven eight"), but "Oh, ..." opening a run before a pause is an
interjection."""
REPEAT = {"double": 2, "triple": 3, "treble": 3}
CARDINALS = frozenset({"thousand", "million", "billion", "trillion", "grand"})
"""A run that has one of these is an amount ("forty thousand"), not a digit sequence."""

FILLERS = frozenset(
    {"uh", "um", "umm", "uhm", "er", "erm", "ah", "eh", "hmm", "hm", "mm", "mhm", "mmhm",
     "huh", "hum", "dash", "hyphen", "space"}
)  # fmt: skip
"""Ignored between digits; they mark a group boundary (a pause)."""
SOFT_WORDS = frozenset(
    {"and", "then", "next", "so", "okay", "ok", "yes", "yeah", "yep", "right", "sorry",
     "again", "is", "it's", "its", "that's", "thats", "the", "rest", "last", "after", "that",
     "followed", "by", "it", "got", "alright", "please", "sure", "correct", "like"}
)  # fmt: skip
"""Words a reader says between the groups of one number ("4111, and then 1111"); at most
:data:`MAX_SOFT_WORDS` of them in a row keep a run going."""
MAX_SOFT_WORDS = 3
SOFT_PUNCT = frozenset(",.-–—‐‑/:;…?!")
"""Punctuation ASR writes between groups ("4111-1111.", "123, 45, 6789?")."""

CURRENCY_SYMBOLS = frozenset("$£€¥₹₩₽¢")
CURRENCY_WORDS = frozenset(
    {"dollar", "dollars", "buck", "bucks", "cent", "cents", "pound", "pounds", "euro", "euros",
     "pence", "quid", "usd", "gbp", "eur", "cad", "aud", "rupees", "yen"}
)  # fmt: skip
PERCENT_WORDS = frozenset({"%", "percent", "percentage", "pct", "basis"})
TIME_WORDS = frozenset({"am", "pm", "o'clock", "oclock", "hundred-hours"})
MONTHS = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
     "sep", "sept", "oct", "nov", "dec"}
)  # fmt: skip
WEEKDAYS = frozenset({"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
YEAR_LEADS = frozenset(
    {"in", "since", "from", "until", "till", "of", "year", "by", "before", "after", "circa",
     "around", "born", "class", "on"}
)  # fmt: skip
UNIT_WORDS = frozenset(
    {"second", "seconds", "minute", "minutes", "min", "mins", "hour", "hours", "hrs", "day",
     "days", "week", "weeks", "month", "months", "year", "years", "yrs", "night", "nights",
     "time", "times", "people", "persons", "person", "items", "item", "kids", "children",
     "miles", "mile", "km", "kilometers", "feet", "foot", "inches", "meters", "gb", "mb",
     "gigs", "gigabytes", "lines", "line", "payments", "payment", "installments", "months'",
     "digits", "digit", "calls", "tickets", "rooms", "points", "old", "business", "working",
     "percent", "degrees", "pounds", "kilos", "kg", "lbs", "accounts", "cards", "texts",
     "messages", "devices", "users", "seats", "transactions", "charges", "bills", "o'clock"}
)  # fmt: skip
"""A number right before one of these is a count or a measure ("30 days", "2 lines")."""

MASK_KINDS = ("CARD", "SSN", "CVV", "DIGITS", "PHONE", "ACCOUNT", "DOB")
MASK_RE = re.compile(r"\[(?:CARD|SSN|CVV|DIGITS|PHONE|ACCOUNT|DOB|REDACTED)\]", re.IGNORECASE)

CONTEXT = {
    "card": re.compile(
        r"\b(?:card|cards|credit|debit|visa|master\s?card|amex|american\s+express|discover|"
        r"maestro|diners|jcb|union\s?pay|pan|cc|long\s+number)\b"
    ),
    "ssn": re.compile(
        r"\b(?:social(?:\s+security)?|ssn|s\s?s\s?n|s\.\s?s\.\s?n\.?|tax\s+id|taxpayer|"
        r"itin|tin)\b"
    ),
    "cvv": re.compile(
        r"\b(?:cvv2?|cvc2?|cvn|cid|csc|security\s+code|"
        r"card\s+verification(?:\s+(?:code|value|number))?|"
        r"(?:three|four|3|4)[\s-]digits?\s+(?:code|number)|code\s+on\s+the\s+back|"
        r"back\s+of\s+the\s+card)\b"
    ),
    "phone": re.compile(
        r"\b(?:phone|telephone|cell|mobile|call\s+(?:me|us|back)|reach\s+me|callback|"
        r"call-back|fax|extension|ext)\b"
    ),
    "account": re.compile(
        r"\b(?:account|acct|a/c|member\s+(?:number|id)|customer\s+(?:number|id)|"
        r"policy\s+number|routing|sort\s+code|iban|reference\s+number)\b"
    ),
    "dob": re.compile(r"\b(?:born|birth|birthday|dob|d\.o\.b\.?|date\s+of\s+birth)\b"),
    # Labels of numbers that are not cards (an order's, a parcel's): they only decide numbers
    # outside the banking networks' ranges (1 UATP, 9 national schemes) said without a card
    # word; the number is still masked as [DIGITS] wherever it is stored.
    "identifier": re.compile(
        r"\b(?:order|orders|tracking|parcel|package|shipment|invoice|ticket|case|claim|"
        r"confirmation|reference|booking|reservation|serial|model|item|sku)\b"
    ),
}
