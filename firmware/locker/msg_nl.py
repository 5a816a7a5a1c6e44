# What residents read in Dutch: ONE string, two lines per screen in the order of locker.messages._KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
    "Even geduld...\nDe kast start op\n"  # starting
    "Typ uw code\nen druk op #\n"  # idle
    "Uw code:\n%s\n"  # entry
    "Code te kort\nTyp %s cijfers\n"  # too_short
    "Deur %s\ngaat nu open\n"  # opening
    "Neem uw pakket\nSluit deur %s\n"  # take
    "Code klopt niet\nProbeer opnieuw\n"  # wrong
    "Code is verlopen\nVraag het loket\n"  # expired
    "Code al gebruikt\nVraag het loket\n"  # used
    "Te veel pogingen\nWacht %s sec\n"  # wait
    "Te veel pogingen\nWacht %s min\n"  # wait_min
    "Deur %s klemt\nProbeer opnieuw\n"  # jammed
    "Sluit deur %s\nalstublieft\n"  # close
    "Pakket ligt nog\nin deur %s\n"  # still_full
    "Dank u wel!\nTot ziens\n"  # thanks
    "Even geduld...\nUw deur volgt\n"  # busy
    "Buiten dienst\nSorry!\n"  # out_of_service
    "Kast niet klaar\nVraag het loket\n"  # no_codes
    "Nederlands\n* = andere taal\n"  # language
    "Deur %s gaat\nweer open\n"  # reopen
    "Deur is stuk\nVraag het loket\n"  # door_oos
    "Nog niet binnen\nKom later terug\n"  # not_yet
    "Geen vrije deur\nVraag het loket\n"  # no_door
    "Leg het in deur\n%s en sluit hem\n"  # return_open
    "Dank u wel!\nWe hebben het\n"  # returned
    "De deur was leeg\nCode werkt nog\n"  # return_empty
    "Sessie klaar\nTot ziens\n"  # staff_bye
    "Neem uw document\nSluit deur %s\n"  # take_document
    "Neem vergunning\nSluit deur %s\n"  # take_permit
    "Neem uw zakken\nSluit deur %s\n"  # take_bags
    "Neem uw spullen\nSluit deur %s\n"  # take_material
    "Loket gesloten\nBel %s\n"  # desk_closed
)
