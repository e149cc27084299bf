#!/usr/bin/env bash
# Regenerates the built-in voicemail system prompts in this directory.
#
# Needs espeak-ng, sox and opus-tools (opusenc). Not run by the build: the generated
# .opus files are committed and embedded in the gateway binary. The output is
# deterministic (fixed Ogg serial, no sox dither, no random metadata), so re-running
# the script on the same tool versions leaves the files byte-for-byte unchanged.
set -euo pipefail

cd "$(dirname "$0")"

for tool in espeak-ng sox opusenc; do
    command -v "$tool" >/dev/null || { echo "make.sh: $tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# say NAME TEXT: writes NAME.opus speaking TEXT.
say() {
    local name=$1 text=$2
    espeak-ng -v en-us -s 160 -w "$tmp/raw.wav" -- "$text"
    # 48 kHz mono 16-bit; trim leading and trailing silence, then keep 0.1 s at the end.
    # -R -D: repeatable, no dither (dither adds random noise and breaks reproducibility).
    sox -R -D "$tmp/raw.wav" -r 48000 -c 1 -b 16 "$tmp/$name.wav" \
        silence 1 0.05 0.1% reverse silence 1 0.05 0.1% reverse pad 0 0.1
    opusenc --quiet --bitrate 20 --comp 10 --serial 1 --padding 0 \
        --title "$name" "$tmp/$name.wav" "$name.opus"
}

# Voicemail: the caller's side.
say vm-greeting      "The person you are calling is not available. Please leave a message after the tone. When you are done, hang up or press the pound key."
say vm-saved         "Your message has been saved. Goodbye."
say vm-too-short     "No message was recorded. Goodbye."
say vm-full          "Sorry, this mailbox is full and cannot take new messages. Goodbye."
say vm-storage-error "Sorry, your message could not be stored. Goodbye."

# The call doctor.
say doctor-intro     "This is the call test. You will hear yourself one second later. When you hang up, a report on the call arrives in your chat."

# IVR `connect`: nobody answered.
say no-answer        "Sorry, nobody is answering right now."

# Voicemail: the owner's mailbox menu.
say vm-you-have       "You have"
say vm-new-messages   "new messages."
say vm-new-message    "new message."
say vm-and            "and"
say vm-saved-messages "saved messages."
say vm-saved-message  "saved message."
say vm-main-menu      "Press 1 to listen to your messages. Press pound to hang up."
say vm-message        "Message"
say vm-after-message  "Press 5 to hear it again, 6 for the next message, 4 for the previous one, 7 to delete it, or pound to hang up."
say vm-deleted        "Message deleted."
say vm-no-more        "No more messages."
say vm-first          "This is the first message."
say vm-no-messages    "You have no messages."
say vm-goodbye        "Goodbye."

# Numbers. 0 is "no", as in "You have no new messages".
numbers=(no one two three four five six seven eight nine ten eleven twelve thirteen
         fourteen fifteen sixteen seventeen eighteen nineteen twenty)
for i in "${!numbers[@]}"; do
    say "num-$i" "${numbers[$i]}"
done
say num-many "more than twenty"

total=$(cat -- *.opus | wc -c)
echo "system prompts: $(ls -- *.opus | wc -l) files, $total bytes ($((total / 1024)) KiB)"
