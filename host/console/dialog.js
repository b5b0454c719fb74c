// The one confirmation dialog (`#confirm-dialog` in index.html), shared by
// every destructive action so they all look and behave alike: a modal
// `<dialog>`, focus on the safe answer, Escape meaning no.

const byId = (id) => document.getElementById(id);

/**
 * Asks the user to confirm; resolves true only on an explicit yes.
 * `yes` and `no` label the buttons so each says what it does.
 */
export function confirmAction({ title = 'Are you sure?', message, yes = 'Delete', no = 'Cancel' }) {
  const dialog = byId('confirm-dialog');
  if (dialog.open) return Promise.resolve(false);
  const yesButton = byId('confirm-yes');
  const noButton = byId('confirm-no');
  byId('confirm-title').textContent = title;
  byId('confirm-message').textContent = message;
  yesButton.textContent = yes;
  noButton.textContent = no;
  const opener = document.activeElement;

  return new Promise((resolve) => {
    // Settled at once on a click or Escape rather than on `close`, which
    // arrives later and could be taken for the next dialog's answer.
    const settle = (answer) => {
      yesButton.removeEventListener('click', onYes);
      noButton.removeEventListener('click', onNo);
      dialog.removeEventListener('cancel', onNo);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(answer);
    };
    const onYes = () => settle(true);
    const onNo = () => settle(false);
    // Closed some other way (signing out closes it): a no, unless this is
    // a late event from an earlier dialog while this one is still open.
    const onClose = () => {
      if (!dialog.open) settle(false);
    };
    yesButton.addEventListener('click', onYes);
    noButton.addEventListener('click', onNo);
    dialog.addEventListener('cancel', onNo);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    noButton.focus();
  });
}
