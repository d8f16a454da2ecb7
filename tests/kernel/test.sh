#!/bin/sh
# In-guest checks of mdev aggregation (kernel-patches/6.12) on the mbochs, mtty
# and mdpy samples, and of Debian's mdevctl with it: one TAP line per check,
# "ok N - name" or "not ok N - name", with "# " lines explaining a failure.
# tests/kernel/kernel_tests.py knows the names and reports any that are missing.

n=0
failed=0
result() {  # result OK NAME [DIAG]
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		failed=$((failed + 1))
		echo "not ok $n - $2"
		[ -n "$3" ] && echo "$3" | sed 's/^/# /'
	fi
}

types=$(ls -d /sys/class/mdev_bus/*/mdev_supported_types/* 2>/dev/null)
tdir() { for t in $types; do [ "${t##*/}" = "$1" ] && echo "$t"; done; }
SMALL=$(tdir mbochs-small)
MEDIUM=$(tdir mbochs-medium)
LARGE=$(tdir mbochs-large)
MTTY1=$(tdir mtty-1)
MTTY2=$(tdir mtty-2)
MB_TYPES="$SMALL $MEDIUM $LARGE"

if [ -z "$SMALL" ] || [ -z "$MEDIUM" ] || [ -z "$LARGE" ] || [ -z "$MTTY1" ] || [ -z "$MTTY2" ]; then
	echo "# mdev types found: $types"
	echo "Bail out! mbochs or mtty types missing"
	exit 1
fi

U1=3c9b7a52-6d4e-4f1a-9c2b-0a1b2c3d4e01
U2=3c9b7a52-6d4e-4f1a-9c2b-0a1b2c3d4e02
U3=3c9b7a52-6d4e-4f1a-9c2b-0a1b2c3d4e03

# "type:available_instances ..." of every mdev type
counts() {
	for t in $types; do
		printf '%s:%s ' "${t##*/}" "$(cat "$t/available_instances")"
	done
}
# mbochs memory in MB per type, from its description ("... 4 MB video memory")
type_mb() { sed -n 's/.* \([0-9]*\) MB video memory.*/\1/p' "$1/description"; }
# free mbochs memory in MB, derived from mbochs-small's count
free_mb() { echo $(( $(cat "$SMALL/available_instances") * $(type_mb "$SMALL") )); }

# write TEXT to FILE in one write(2); prints the error text (empty on
# success).  busybox's echo reports a failed write, its printf does not.
write() { { echo -n "$2" > "$1"; } 2>&1 | sed 's/.*: write error: //'; }
create() { write "$1/create" "$2"; }
remove() { write "/sys/bus/mdev/devices/$1/remove" 1; }
exists() { [ -e "/sys/bus/mdev/devices/$1" ]; }

BASE=$(counts)
BASE_FREE=$(free_mb)
echo "# counts at start: $BASE (mbochs free ${BASE_FREE} MB)"

# --- the aggregation attribute ------------------------------------------
agg=$(cat "$SMALL/aggregation" 2>&1)
[ -f "$SMALL/aggregation" ] && [ "$agg" -ge 2 ] 2>/dev/null
result $? "mbochs-small shows aggregation ($agg)" "aggregation: $agg"

bad=""
for t in $MTTY1 $MTTY2; do [ -e "$t/aggregation" ] && bad="$bad ${t##*/}"; done
[ -z "$bad" ]
result $? "mtty types do not show aggregation" "aggregation present on:$bad"

# --- an aggregated device -----------------------------------------------
SMALL_MB=$(type_mb "$SMALL")
err=$(create "$SMALL" "$U1,aggregate=4")
AFTER=$(counts)
ai=$(cat "/sys/bus/mdev/devices/$U1/aggregated_instances" 2>&1)
[ -z "$err" ] && [ "$ai" = 4 ]
result $? "mbochs-small <uuid>,aggregate=4: aggregated_instances is 4" \
	"create: '$err' aggregated_instances: '$ai'"

mem=$(cat "/sys/bus/mdev/devices/$U1/vendor/memory" 2>&1)
[ "$mem" = "$((SMALL_MB * 4)) MB" ]
result $? "aggregate=4: device memory is 4x the type's ($mem)" \
	"vendor/memory '$mem', type has $SMALL_MB MB"

regions=$(/bin/vfio-region "$U1" 2>&1)
r0=$(echo "$regions" | sed -n 's/^region 0 //p')
[ "$r0" = "$((SMALL_MB * 4 * 1024 * 1024))" ]
result $? "aggregate=4: VFIO region 0 size read through VFIO is 4x the type's ($r0)" "$regions"

bad=""
for t in $MB_TYPES; do
	want=$(( (BASE_FREE - SMALL_MB * 4) / $(type_mb "$t") ))
	got=$(cat "$t/available_instances")
	[ "$got" = "$want" ] || bad="$bad ${t##*/}:$got(want $want)"
done
result "$([ -z "$bad" ]; echo $?)" \
	"aggregate=4: available_instances of every mbochs type dropped by 4 small instances' memory" \
	"before: $BASE after: $AFTER wrong:$bad"

err=$(remove "$U1")
[ -z "$err" ] && ! exists "$U1" && [ "$(counts)" = "$BASE" ]
result $? "remove of the aggregated device restores all counts" \
	"remove: '$err' before: $BASE now: $(counts)"

# --- a plain device -----------------------------------------------------
err=$(create "$SMALL" "$U2")
ai=$(cat "/sys/bus/mdev/devices/$U2/aggregated_instances" 2>&1)
mem=$(cat "/sys/bus/mdev/devices/$U2/vendor/memory" 2>&1)
regions=$(/bin/vfio-region "$U2" 2>&1)
r0=$(echo "$regions" | sed -n 's/^region 0 //p')
small_now=$(cat "$SMALL/available_instances")
[ -z "$err" ] && [ "$ai" = 1 ] && [ "$mem" = "$SMALL_MB MB" ] &&
	[ "$r0" = "$((SMALL_MB * 1024 * 1024))" ] &&
	[ "$small_now" = $((BASE_FREE / SMALL_MB - 1)) ]
result $? "plain <uuid> creates an unaggregated device (aggregated_instances 1, one instance's memory)" \
	"create: '$err' aggregated_instances '$ai' memory '$mem' region 0 '$r0' small available $small_now
$regions"
# keep U2 for the duplicate check below
WITH_U2=$(counts)

# --- mtty keeps working -------------------------------------------------
m2=$(cat "$MTTY2/available_instances")
err=$(create "$MTTY2" "$U3")
ai=$(cat "/sys/bus/mdev/devices/$U3/aggregated_instances" 2>&1)
m2_during=$(cat "$MTTY2/available_instances")
err2=$(remove "$U3")
[ -z "$err" ] && [ -z "$err2" ] && [ "$ai" = 1 ] && [ "$m2_during" -lt "$m2" ] &&
	[ "$(cat "$MTTY2/available_instances")" = "$m2" ]
result $? "mtty-2 plain create and remove still work (aggregated_instances 1, count restored)" \
	"create '$err' remove '$err2' aggregated_instances '$ai' available $m2 -> $m2_during -> $(cat "$MTTY2/available_instances")"

# --- the core's counter (mdpy: max_instances, no get_available) ----------
VGA=$(tdir mdpy-vga)
HD=$(tdir mdpy-hd)
c0=$(cat "$VGA/available_instances")
diag=""
made=""
i=0
while [ $i -lt "$c0" ]; do
	u=3c9b7a52-6d4e-4f1a-9c2b-0a1b2c3d4f0$i
	err=$(create "$([ $((i % 2)) = 0 ] && echo "$VGA" || echo "$HD")" "$u")
	[ -z "$err" ] && made="$made $u" || diag="$diag create $i: $err;"
	i=$((i + 1))
done
full=$(cat "$VGA/available_instances")
err=$(create "$VGA" "$U1")
err2=$(create "$VGA" "$U1,aggregate=1")
for u in $made; do e=$(remove "$u"); [ -z "$e" ] || diag="$diag remove $u: $e;"; done
[ -n "$VGA" ] && [ "$c0" -ge 1 ] && [ -z "$diag" ] && [ "$full" = 0 ] &&
	[ "$err" = "Too many users" ] && [ "$err2" = "Invalid argument" ] && ! exists "$U1" &&
	[ "$(counts)" = "$WITH_U2" ]
result $? "mdpy (core counter): $c0 devices use it up, one more fails with EUSERS, aggregate fails with EINVAL, removes restore it" \
	"start $c0, when full $full; one more: '$err'; aggregate=1: '$err2';$diag counts $(counts), want $WITH_U2"

# --- rejected requests --------------------------------------------------
# reject NAME TYPE TEXT...: every TEXT fails with EINVAL, creates nothing
# and leaves every type's count as it was
reject() {
	name=$1 t=$2
	shift 2
	diag=""
	for text in "$@"; do
		err=$(create "$t" "$text")
		[ "$err" = "Invalid argument" ] || diag="$diag
'$text' -> '${err:-accepted}'"
		exists "$U1" && { diag="$diag
'$text' left a device"; remove "$U1" >/dev/null; }
		[ "$(counts)" = "$WITH_U2" ] || diag="$diag
'$text' counts $(counts), want $WITH_U2"
	done
	result "$([ -z "$diag" ]; echo $?)" "rejected with EINVAL, nothing leaked: $name" "$diag"
}
MAX=$(cat "$SMALL/aggregation")
reject "aggregate=0" "$SMALL" "$U1,aggregate=0" "$U1,aggregate=00"
reject "N above aggregation ($((MAX + 1)), $((MAX * 2)))" "$SMALL" \
	"$U1,aggregate=$((MAX + 1))" "$U1,aggregate=$((MAX * 2))"
reject "N not allowed by the driver (3, 5, 6: the BAR stays a power of two)" "$SMALL" \
	"$U1,aggregate=3" "$U1,aggregate=5" "$U1,aggregate=6"
reject "aggregate= empty" "$SMALL" "$U1,aggregate=" "$U1,aggregate=
"
reject "aggregate=4x and other junk" "$SMALL" "$U1,aggregate=4x" "$U1,aggregate=+4" \
	"$U1,aggregate=-4" "$U1,aggregate= 4" "$U1,aggregate=4 " "$U1,aggregate=0x4" \
	"$U1,aggregate=4

" "${U1}x"
reject "a huge number" "$SMALL" "$U1,aggregate=4294967296" "$U1,aggregate=4294967300" \
	"$U1,aggregate=99999999999999999999999999"
reject "an unknown key" "$SMALL" "$U1,instances=4" "$U1,Aggregate=4" "$U1,aggregate" "$U1,"
reject "a second comma" "$SMALL" "$U1,aggregate=4,aggregate=4" "$U1,aggregate=4," \
	"$U1,,aggregate=4"
reject "aggregation on a type without support (mtty)" "$MTTY2" "$U1,aggregate=1" \
	"$U1,aggregate=2"

err=$(create "$SMALL" "$U2")
err2=$(create "$MEDIUM" "$U2,aggregate=2")
[ "$err" = "File exists" ] && [ "$err2" = "File exists" ] && [ "$(counts)" = "$WITH_U2" ]
result $? "a duplicate UUID still fails with EEXIST, plain or aggregated, counts unchanged" \
	"plain: '$err' aggregated: '$err2' counts $(counts), want $WITH_U2"

err=$(remove "$U2")
[ -z "$err" ] && [ "$(counts)" = "$BASE" ]
result $? "remove of the plain device restores all counts" "remove '$err' counts $(counts)"

# --- create/remove in a loop --------------------------------------------
LOOPS=${LOOPS:-300}
i=0 diag=""
while [ $i -lt "$LOOPS" ] && [ -z "$diag" ]; do
	case $((i % 3)) in
	0) text="$U1,aggregate=$(( 1 << (i % 7) ))" t=$SMALL ;;
	1) text="$U1" t=$MEDIUM ;;
	2) text="$U1,aggregate=4" t=$LARGE ;;
	esac
	err=$(create "$t" "$text")
	[ -z "$err" ] || diag="create $i '$text': $err"
	err=$(remove "$U1")
	[ -z "$err" ] || diag="$diag remove $i: $err"
	i=$((i + 1))
done
[ -z "$diag" ] && [ "$(counts)" = "$BASE" ]
result $? "create/remove $LOOPS times (aggregated and plain) leaves the counts where they started" \
	"$diag
start: $BASE
end:   $(counts)"

# --- Debian's mdevctl (1.2.0) ------------------------------------------
# mdevctl writes the bare 36-character UUID to create and sets a config's
# "attrs" on the device only after it exists, so it cannot ask for
# aggregate=N; it lists, stops and counts aggregated devices made through
# sysfs (docs/kernel-patches.md).
MDEVCTL=/usr/bin/mdevctl
PARENT=${SMALL%/mdev_supported_types/*}
PARENT=${PARENT##*/}
mdevctl() { "$MDEVCTL" "$@" 2>&1; }
# "available_instances" of TYPE on PARENT as mdevctl types shows it
mdevctl_avail() {
	mdevctl types -p "$PARENT" | sed -n "/^  $1\$/,/Available/s/.*Available instances: //p"
}
LISTED="$U1 $PARENT mbochs-small manual"

ver=$(mdevctl --version)
small=$(mdevctl_avail mbochs-small)
[ "$ver" = "mdevctl 1.2.0" ] && [ "$small" = "$(cat "$SMALL/available_instances")" ]
result $? "mdevctl runs in the guest ($ver) and its types show mbochs-small's count ($small)" \
	"version: '$ver' types: $(mdevctl types -p "$PARENT")"

out=$(mdevctl start -u "$U1" -p "$PARENT" -t mbochs-small; echo "rc=$?")
ai=$(cat "/sys/bus/mdev/devices/$U1/aggregated_instances" 2>&1)
list=$(mdevctl list)
stop=$(mdevctl stop -u "$U1"; echo "rc=$?")
[ "$out" = "rc=0" ] && [ "$ai" = 1 ] && echo "$list" | grep -qxF "$LISTED" &&
	[ "$stop" = "rc=0" ] && ! exists "$U1" && [ "$(counts)" = "$BASE" ]
result $? "mdevctl start -u U -p $PARENT -t mbochs-small: a plain device (aggregated_instances 1), list shows it, stop removes it" \
	"start: $out aggregated_instances '$ai' stop: $stop
list: $list
counts $(counts), want $BASE"

err=$(create "$SMALL" "$U1,aggregate=4")
ai=$(cat "/sys/bus/mdev/devices/$U1/aggregated_instances" 2>&1)
list=$(mdevctl list)
json=$(mdevctl list -u "$U1" --dumpjson)
large=$(mdevctl_avail mbochs-large)
want_large=$(( (BASE_FREE - SMALL_MB * 4) / $(type_mb "$LARGE") ))
[ -z "$err" ] && [ "$ai" = 4 ] && echo "$list" | grep -qxF "$LISTED" &&
	echo "$json" | grep -qF '"mdev_type": "mbochs-small"' && [ "$large" = "$want_large" ]
result $? "mdevctl list shows a device created with <uuid>,aggregate=4 through sysfs (aggregated_instances 4, types: mbochs-large down to $large)" \
	"create: '$err' aggregated_instances '$ai' mbochs-large $large, want $want_large
list: $list
dumpjson: $json"

def=$(mdevctl define -u "$U1"; echo "rc=$?")
conf=$(cat "/etc/mdevctl.d/$PARENT/$U1" 2>&1)
undef=$(mdevctl undefine -u "$U1"; echo "rc=$?")
[ "$def" = "rc=0" ] && [ "$undef" = "rc=0" ] && echo "$conf" | grep -qF '"mbochs-small"' &&
	! echo "$conf" | grep -q aggregat
result $? "mdevctl define -u of the running aggregated device saves only its type (1.2.0 cannot persist aggregate=N)" \
	"define: $def undefine: $undef
config: $conf"

stop=$(mdevctl stop -u "$U1"; echo "rc=$?")
list=$(mdevctl list)
[ "$stop" = "rc=0" ] && ! exists "$U1" && [ -z "$list" ] && [ "$(counts)" = "$BASE" ]
result $? "mdevctl stop removes the aggregated device and restores all counts" \
	"stop: $stop list: '$list' counts $(counts), want $BASE"

# every way of asking mdevctl for aggregation fails and leaves nothing: the
# UUID does not parse, the type does not exist, the attribute is read-only
# (mdevctl created the device, fails to write it and removes the device)
echo '{"mdev_type": "mbochs-small", "start": "manual", "attrs": [{"aggregated_instances": "4"}]}' \
	> /tmp/aggregate.json
diag=""
for try in "-u $U1,aggregate=4 -p $PARENT -t mbochs-small|Invalid value" \
	"-u $U1 -p $PARENT -t mbochs-small,aggregate=4|does not support mdev type" \
	"-u $U1 -p $PARENT --jsonfile /tmp/aggregate.json|attribute aggregated_instances"; do
	args=${try%|*} want=${try#*|}
	# shellcheck disable=SC2086
	out=$(mdevctl start $args; echo "rc=$?")
	case $out in
	*"$want"*rc=[1-9]*) ;;
	*) diag="$diag
start $args: $out (want '$want' and a failure)" ;;
	esac
	exists "$U1" && { diag="$diag
start $args left a device"; remove "$U1" >/dev/null; }
	[ "$(counts)" = "$BASE" ] || diag="$diag
start $args: counts $(counts), want $BASE"
done
result "$([ -z "$diag" ]; echo $?)" \
	"mdevctl start cannot aggregate: U,aggregate=4, TYPE,aggregate=4 and a jsonfile attribute aggregated_instances fail, nothing leaked" \
	"$diag"

echo "# $n checks, $failed failed"
[ $failed = 0 ]
