/**
 * Exit statuses of the daemons' commands, one table for all (the units' RestartPreventExitStatus= lists the
 * ones a restart cannot fix, so systemd does not restart such a daemon in a loop):
 *   0   ok
 *   1   any other error
 *   77  revoked: this component was revoked, or its certificate was renewed by another copy (E_SUBJECT_REVOKED,
 *       E_CERT_REVOKED, E_CERT_SUPERSEDED), or it was away while a rotation retired its CA (E_ROTATION_MISSED);
 *       enroll again
 *   78  configuration is invalid, or the state directory is not enrolled (E_CONFIG_INVALID), or a secret file
 *       is readable by group or others (E_SECRET_FILE_MODE)
 */
import type { ErrorCode } from '../errors/codes.js';

export const EXIT_REVOKED = 77;
export const EXIT_CONFIG = 78;

export function daemonExitStatus(code: ErrorCode | undefined): number {
  if (code === 'E_CONFIG_INVALID' || code === 'E_SECRET_FILE_MODE') return EXIT_CONFIG;
  if (
    code === 'E_SUBJECT_REVOKED' ||
    code === 'E_CERT_REVOKED' ||
    code === 'E_CERT_SUPERSEDED' ||
    code === 'E_ROTATION_MISSED'
  )
    return EXIT_REVOKED;
  return 1;
}
