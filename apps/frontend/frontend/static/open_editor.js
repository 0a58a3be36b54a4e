() => {
  const addButtons = () => {
    for (const row of document.querySelectorAll('#results [data-id]')) {
      if (row.querySelector('.edit-result')) continue;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'edit-result';
      button.textContent = 'Edit';
      button.setAttribute('aria-label', 'Edit product #' + row.dataset.id);
      if (row.tagName === 'TR') { const cell = document.createElement('td'); cell.appendChild(button); row.appendChild(cell); }
      else { row.appendChild(button); }
    }
  };
  // The button carries no data-id of its own, so adding it never matches the selector again.
  new MutationObserver(addButtons).observe(document.body, {childList: true, subtree: true});
  document.addEventListener('click', (event) => {
    const button = event.target.closest && event.target.closest('#results .edit-result');
    if (!button) return;
    window.productsearchEditId = button.closest('[data-id]').dataset.id;
    document.querySelector('#open-editor-btn').click();
  });
}
