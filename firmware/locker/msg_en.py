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
    "Door %s stuck\nPlease try again\n"  # jammed
    "Please close\ndoor %s\n"  # close
    "Parcel still in\ndoor %s\n"  # still_full
    "Thank you!\nGoodbye\n"  # thanks
    "Your door opens\nin a moment\n"  # busy
    "Out of service\nSorry!\n"  # out_of_service
    "Not ready yet\nAsk at the desk\n"  # no_codes
    "English\n* = language\n"  # language
    "Door %s opens\nagain\n"  # reopen
    "Door is broken\nAsk at the desk\n"  # door_oos
    "Not here yet\nCome back later\n"  # not_yet
    "No free door\nAsk at the desk\n"  # no_door
    "Put it in door\n%s and close it\n"  # return_open
    "Thank you!\nItem received\n"  # returned
    "Door was empty\nCode still works\n"  # return_empty
    "Session ended\nGoodbye\n"  # staff_bye
    "Take your papers\nClose door %s\n"  # take_document
    "Take your permit\nClose door %s\n"  # take_permit
    "Take your bags\nClose door %s\n"  # take_bags
    "Take your items\nClose door %s\n"  # take_material
    "Desk is closed\nTel %s\n"  # desk_closed
)
