# What staff read in English: ONE string, two lines per screen in the order of locker.messages.STAFF_KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
    "1 Load   2 Size\n3 Expired 4 Door\n"  # staff_menu
    "Delivery number\n%s\n"  # staff_number
    "Size? 1S 2M 3L\n* = back\n"  # staff_size
    "Which door?\n%s\n"  # staff_door
    "Door %s open\nLoad it, close\n"  # staff_open
    "Door %s loaded\nDone!\n"  # staff_loaded
    "Door %s empty\nNothing loaded\n"  # staff_empty
    "Unknown number\n* = back\n"  # staff_unknown
    "Loaded already\nor expired\n"  # staff_done_already
    "No free door\nthat fits\n"  # staff_no_door
    "Door %s open\nTake it, close\n"  # staff_take
    "# = next\n* = menu\n"  # staff_next
    "Nothing expired\n* = menu\n"  # staff_none
    "Door %s\nout of service\n"  # staff_off
    "Door %s\nin service\n"  # staff_on
    "Door %s empty\nThank you\n"  # staff_taken
)
