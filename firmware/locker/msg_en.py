# What residents read in English: ONE string, two lines per screen in the order of locker.messages._KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
    "Please wait...\nStarting up\n"  # starting
    "Type your code\nthen press #\n"  # idle
    "Your code:\n%s\n"  # entry
    "Code too short\nType %s digits\n"  # too_short
    "Door %s\nis opening\n"  # opening
    "Take your parcel\nClose door %s\n"  # take
    "Wrong code\nPlease try again\n"  # wrong
    "Code has expired\nAsk at the desk\n"  # expired
    "Code was used\nAsk at the desk\n"  # used
    "Too many tries\nWait %s sec\n"  # wait
    "Too many tries\nWait %s min\n"  # wait_min
    "Door %s\nis stuck\n"  # jammed
    "Close door %s\nplease\n"  # close
    "Parcel still in\ndoor %s\n"  # still_full
    "Thank you!\nGoodbye\n"  # thanks
    "One moment...\nDoor opens soon\n"  # busy
    "Out of service\nSorry!\n"  # out_of_service
    "Not ready yet\nAsk at the desk\n"  # no_codes
    "English\n* = language\n"  # language
    "Door %s opens\nagain\n"  # reopen
    "Door is broken\nAsk at the desk\n"  # door_oos
    "Not here yet\nCome back later\n"  # not_yet
    "No free door\nAsk at the desk\n"  # no_door
    "Put it in door\n%s, then close\n"  # return_open
    "Thank you!\nWe got it\n"  # returned
    "Door was empty\nCode still works\n"  # return_empty
    "Session over\nGoodbye\n"  # staff_bye
)
