"use strict";(self.rspackChunkndustria_labextension=self.rspackChunkndustria_labextension||[]).push([[817],{475(r,t,a){var e=a(601),o=a.n(e),n=a(314),i=(a.n(n))()(o());i.push([r.id,`/* The ndustria sidebar; JupyterLab's CSS variables keep it right in light and dark themes. */
.jp-ndustria-panel {
  display: flex;
  flex-direction: column;
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
  overflow: auto;
  min-width: 240px;
  container-type: inline-size; /* columns that do not fit the sidebar's width step aside (Engine) */
}

.jp-ndustria-toolbar {
  display: flex;
  gap: 4px;
  padding: 6px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-toolbar button {
  background: none;
  border: none;
  border-bottom: 2px solid transparent;
  color: var(--jp-ui-font-color1);
  cursor: pointer;
  font-size: var(--jp-ui-font-size1);
  padding: 2px 8px;
}

.jp-ndustria-toolbar button.jp-mod-active {
  border-bottom-color: var(--jp-brand-color1);
  font-weight: 600;
}

.jp-ndustria-toolbar .jp-ndustria-refresh {
  margin-left: auto;
}

.jp-ndustria-status {
  color: var(--jp-error-color1);
  padding: 0 8px;
}

.jp-ndustria-status:empty {
  display: none;
}

.jp-ndustria-body {
  padding: 4px 0;
}

.jp-ndustria-empty {
  color: var(--jp-ui-font-color2);
  padding: 0 8px;
}

.jp-ndustria-runs {
  max-height: 40vh;
  overflow: auto;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-run {
  cursor: pointer;
  padding: 4px 8px;
  border-left: 3px solid transparent;
}

.jp-ndustria-run:hover {
  background: var(--jp-layout-color2);
}

.jp-ndustria-run.jp-mod-selected {
  background: var(--jp-layout-color2);
  border-left-color: var(--jp-brand-color1);
}

.jp-ndustria-name {
  font-weight: 600;
}

.jp-ndustria-meta {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  padding: 1px 0;
}

.jp-ndustria-body > .jp-ndustria-meta {
  padding: 4px 8px;
}

.jp-ndustria-section h3 {
  font-size: var(--jp-ui-font-size1);
  margin: 8px 8px 4px;
  white-space: nowrap;
}

.jp-ndustria-section h3 > .jp-ndustria-title {
  display: inline-block;
  max-width: calc(100% - 110px); /* beside the Follow newest button */
  overflow: hidden;
  text-overflow: ellipsis;
  vertical-align: bottom;
}

.jp-ndustria-table {
  border-collapse: collapse;
  width: 100%;
}

.jp-ndustria-table th {
  color: var(--jp-ui-font-color2);
  font-weight: normal;
  text-align: left;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-table th,
.jp-ndustria-table td {
  padding: 2px 3px;
  white-space: nowrap;
}

.jp-ndustria-table th:first-child,
.jp-ndustria-table td:first-child {
  padding-left: 8px;
}

/* The name takes what the other columns leave; numbers keep their whole width. */
.jp-ndustria-table .jp-ndustria-task-name {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
  width: 100%;
  max-width: 0;
}

/* A name cut in the middle: the head shrinks behind an ellipsis, the tail stays whole. */
.jp-ndustria-middle {
  display: block;
  overflow: hidden;
  white-space: nowrap;
}

.jp-ndustria-head {
  display: inline-block;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: pre;
  vertical-align: top;
}

.jp-ndustria-tail {
  white-space: pre;
}

.jp-ndustria-num {
  text-align: right;
  font-variant-numeric: tabular-nums;
  font-size: var(--jp-ui-font-size0);
}

.jp-ndustria-num.jp-ndustria-earlier {
  color: var(--jp-ui-font-color2);
  font-style: italic;
}

.jp-ndustria-table .jp-ndustria-action {
  padding: 0;
}

/*
 * Narrower than a table of full names and numbers (the sidebar's default width is 250px): each row
 * takes two lines, the name alone on the first, the state and numbers under it; every value stays.
 */
@container (max-width: 439px) {
  .jp-ndustria-table,
  .jp-ndustria-table tbody {
    display: block;
  }

  .jp-ndustria-table thead {
    display: none;
  }

  .jp-ndustria-table tr.jp-ndustria-task,
  .jp-ndustria-table tr.jp-ndustria-entry {
    display: grid;
    align-items: center;
    column-gap: 4px;
    padding: 3px 6px 3px 8px;
    border-bottom: var(--jp-border-width) solid var(--jp-border-color3);
  }

  .jp-ndustria-table tr.jp-ndustria-task {
    grid-template-columns: auto minmax(0, 1fr) auto auto;
  }

  .jp-ndustria-table tr.jp-ndustria-entry {
    grid-template-columns: minmax(0, 1fr) auto auto auto auto;
  }

  .jp-ndustria-table tr.jp-ndustria-task > td,
  .jp-ndustria-table tr.jp-ndustria-entry > td,
  .jp-ndustria-table tr.jp-ndustria-task > td:first-child,
  .jp-ndustria-table tr.jp-ndustria-entry > td:first-child {
    padding: 0;
    width: auto;
    max-width: none;
    min-width: 0;
  }

  .jp-ndustria-table tr > td.jp-ndustria-num {
    padding: 0 2px; /* room for a fraction of a pixel of text: numbers are never clipped */
    min-width: max-content; /* the name gives way, never a number */
  }

  .jp-ndustria-task > .jp-ndustria-task-name {
    grid-area: 1 / 1 / 2 / -1;
  }

  .jp-ndustria-task > .jp-ndustria-state {
    grid-area: 2 / 1;
  }

  .jp-ndustria-task > .jp-ndustria-engine {
    grid-area: 2 / 2;
    color: var(--jp-ui-font-color2);
    font-size: var(--jp-ui-font-size0);
    overflow: hidden;
    text-overflow: ellipsis;
  }

  .jp-ndustria-task > .jp-ndustria-time {
    grid-area: 2 / 3;
  }

  .jp-ndustria-task > .jp-ndustria-mem {
    grid-area: 2 / 4;
  }

  .jp-ndustria-task > .jp-ndustria-mem::before {
    content: 'peak ';
    color: var(--jp-ui-font-color2);
  }

  .jp-ndustria-entry > .jp-ndustria-task-name {
    grid-area: 1 / 1 / 2 / 5;
  }

  .jp-ndustria-entry > .jp-ndustria-action {
    grid-area: 1 / 5;
  }

  .jp-ndustria-entry > .jp-ndustria-size {
    grid-area: 2 / 2;
  }

  .jp-ndustria-entry > .jp-ndustria-age {
    grid-area: 2 / 3;
  }

  .jp-ndustria-entry > .jp-ndustria-used {
    grid-area: 2 / 4;
  }

  .jp-ndustria-entry > .jp-ndustria-age::before {
    content: 'age ';
    color: var(--jp-ui-font-color2);
  }

  .jp-ndustria-entry > .jp-ndustria-used::before {
    content: 'used ';
    color: var(--jp-ui-font-color2);
  }

  .jp-ndustria-entry > .jp-ndustria-used::after {
    content: ' ago';
    color: var(--jp-ui-font-color2);
  }

  .jp-ndustria-table tr.jp-ndustria-error-row,
  .jp-ndustria-table tr.jp-ndustria-error-row > td {
    display: block;
    padding: 0 6px 4px 8px;
  }
}

.jp-ndustria-run-head {
  white-space: nowrap;
}

.jp-ndustria-run-head .jp-ndustria-name {
  display: inline-block;
  max-width: calc(100% - 90px); /* the state badge stays beside it */
  margin-right: 6px;
  overflow: hidden;
  text-overflow: ellipsis;
  vertical-align: bottom;
}

.jp-ndustria-follow {
  background: none;
  border: var(--jp-border-width) solid var(--jp-border-color2);
  border-radius: 3px;
  color: var(--jp-brand-color1);
  cursor: pointer;
  font-size: var(--jp-ui-font-size0);
  margin-left: 6px;
  padding: 0 4px;
}

.jp-ndustria-error {
  color: var(--jp-error-color1);
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-ui-font-size0);
  white-space: normal !important;
}

.jp-ndustria-badge {
  border-radius: 8px;
  white-space: nowrap;
  color: var(--jp-ui-inverse-font-color1);
  font-size: var(--jp-ui-font-size0);
  padding: 0 6px;
  background: var(--jp-layout-color4);
}

.jp-ndustria-done {
  background: var(--jp-success-color1);
}

.jp-ndustria-failed,
.jp-ndustria-interrupted {
  background: var(--jp-error-color1);
}

.jp-ndustria-skipped {
  background: var(--jp-warn-color1);
}

.jp-ndustria-running {
  background: var(--jp-brand-color1);
}

.jp-ndustria-cached {
  background: var(--jp-info-color1);
}

.jp-ndustria-queued {
  background: var(--jp-layout-color3);
  color: var(--jp-ui-font-color1);
}

.jp-ndustria-delete {
  background: none;
  border: none;
  color: var(--jp-ui-font-color2);
  cursor: pointer;
  padding: 0 4px;
}

.jp-ndustria-delete:hover {
  color: var(--jp-error-color1);
}
`,""]),a.d(t,{},{A:i})},33(r,t,a){var e=a(601),o=a.n(e),n=a(314),i=(a.n(n))()(o());i.push([r.id,`/* Cell state markers, the cache selector and the task graph (issue 17). JupyterLab's variables only. */
.jp-Cell.jp-ndustria-marked {
  position: relative;
}

.jp-ndustria-cellstate {
  position: absolute;
  left: 4px;
  top: 28px;
  z-index: 2;
  max-width: calc(var(--jp-cell-prompt-width, 64px) - 8px);
  padding: 0 5px;
  border-radius: 8px;
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size0);
  line-height: 16px;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
  cursor: help;
  color: var(--jp-ui-inverse-font-color1);
  background: var(--jp-layout-color4);
}

.jp-ndustria-cellstate[data-state='cached'] {
  background: var(--jp-success-color1);
}

.jp-ndustria-cellstate[data-state='stale'] {
  background: var(--jp-warn-color1);
}

.jp-ndustria-cellstate[data-state='failed'] {
  background: var(--jp-error-color1);
}

.jp-ndustria-cellstate[data-state='running'] {
  background: var(--jp-brand-color1);
}

.jp-ndustria-cellstate[data-state='never run'],
.jp-ndustria-cellstate[data-state='unknown'],
.jp-ndustria-cellstate[data-state='uncacheable'] {
  background: var(--jp-layout-color3);
  color: var(--jp-ui-font-color1);
}

.jp-ndustria-caches {
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 4px;
  padding: 4px 8px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jp-ndustria-cache-select {
  flex: 1;
  min-width: 0;
  font-size: var(--jp-ui-font-size0);
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1);
}

.jp-ndustria-cache-note {
  flex-basis: 100%;
}

.jp-ndustria-cache-note:empty {
  display: none;
}

.jp-ndustria-graph h3 {
  font-size: var(--jp-ui-font-size1);
  margin: 8px 8px 4px;
}

.jp-ndustria-graph-box {
  padding: 0 8px;
  overflow: auto;
  max-height: 60vh;
}

.jp-ndustria-graph > .jp-ndustria-meta {
  padding: 2px 8px;
}

.jp-ndustria-edge {
  fill: none;
  stroke: var(--jp-border-color1);
  stroke-width: 1.5;
}

.jp-ndustria-arrowhead {
  fill: var(--jp-border-color1);
}

.jp-ndustria-node rect {
  fill: var(--jp-layout-color2);
  stroke: var(--jp-border-color1);
  stroke-width: 1;
}

.jp-ndustria-node-done rect {
  fill: var(--jp-success-color3, var(--jp-layout-color2));
  stroke: var(--jp-success-color1);
}

.jp-ndustria-node-cached rect {
  fill: var(--jp-info-color3, var(--jp-layout-color2));
  stroke: var(--jp-info-color1);
}

.jp-ndustria-node-failed rect {
  fill: var(--jp-error-color3, var(--jp-layout-color2));
  stroke: var(--jp-error-color1);
  stroke-width: 2;
}

.jp-ndustria-node-running rect {
  stroke: var(--jp-brand-color1);
  stroke-width: 2;
}

.jp-ndustria-node text {
  fill: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
}

.jp-ndustria-node-name {
  font-size: 11px;
  font-weight: 600;
}

.jp-ndustria-node-detail {
  font-size: 10px;
  fill: var(--jp-ui-font-color2) !important;
}
`,""]),a.d(t,{},{A:i})},314(r){r.exports=function(r){var t=[];return t.toString=function(){return this.map(function(t){var a="",e=void 0!==t[5];return t[4]&&(a+="@supports (".concat(t[4],") {")),t[2]&&(a+="@media ".concat(t[2]," {")),e&&(a+="@layer".concat(t[5].length>0?" ".concat(t[5]):""," {")),a+=r(t),e&&(a+="}"),t[2]&&(a+="}"),t[4]&&(a+="}"),a}).join("")},t.i=function(r,a,e,o,n){"string"==typeof r&&(r=[[null,r,void 0]]);var i={};if(e)for(var d=0;d<this.length;d++){var s=this[d][0];null!=s&&(i[s]=!0)}for(var p=0;p<r.length;p++){var l=[].concat(r[p]);e&&i[l[0]]||(void 0!==n&&(void 0===l[5]||(l[1]="@layer".concat(l[5].length>0?" ".concat(l[5]):""," {").concat(l[1],"}")),l[5]=n),a&&(l[2]&&(l[1]="@media ".concat(l[2]," {").concat(l[1],"}")),l[2]=a),o&&(l[4]?(l[1]="@supports (".concat(l[4],") {").concat(l[1],"}"),l[4]=o):l[4]="".concat(o)),t.push(l))}},t}},601(r){r.exports=function(r){return r[1]}},72(r){var t=[];function a(r){for(var a=-1,e=0;e<t.length;e++)if(t[e].identifier===r){a=e;break}return a}function e(r,e){for(var o={},n=[],i=0;i<r.length;i++){var d=r[i],s=e.base?d[0]+e.base:d[0],p=o[s]||0,l="".concat(s," ").concat(p);o[s]=p+1;var u=a(l),c={css:d[1],media:d[2],sourceMap:d[3],supports:d[4],layer:d[5]};if(-1!==u)t[u].references++,t[u].updater(c);else{var j=function(r,t){var a=t.domAPI(t);return a.update(r),function(t){t?(t.css!==r.css||t.media!==r.media||t.sourceMap!==r.sourceMap||t.supports!==r.supports||t.layer!==r.layer)&&a.update(r=t):a.remove()}}(c,e);e.byIndex=i,t.splice(i,0,{identifier:l,updater:j,references:1})}n.push(l)}return n}r.exports=function(r,o){var n=e(r=r||[],o=o||{});return function(r){r=r||[];for(var i=0;i<n.length;i++){var d=a(n[i]);t[d].references--}for(var s=e(r,o),p=0;p<n.length;p++){var l=a(n[p]);0===t[l].references&&(t[l].updater(),t.splice(l,1))}n=s}}},659(r){var t={};r.exports=function(r,a){var e=function(r){if(void 0===t[r]){var a=document.querySelector(r);if(window.HTMLIFrameElement&&a instanceof window.HTMLIFrameElement)try{a=a.contentDocument.head}catch(r){a=null}t[r]=a}return t[r]}(r);if(!e)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");e.appendChild(a)}},540(r){r.exports=function(r){var t=document.createElement("style");return r.setAttributes(t,r.attributes),r.insert(t,r.options),t}},56(r,t,a){r.exports=function(r){var t=a.nc;t&&r.setAttribute("nonce",t)}},206(r){r.exports=function(r){if("u"<typeof document)return{update:function(){},remove:function(){}};var t=r.insertStyleElement(r);return{update:function(a){var e,o,n;e="",a.supports&&(e+="@supports (".concat(a.supports,") {")),a.media&&(e+="@media ".concat(a.media," {")),(o=void 0!==a.layer)&&(e+="@layer".concat(a.layer.length>0?" ".concat(a.layer):""," {")),e+=a.css,o&&(e+="}"),a.media&&(e+="}"),a.supports&&(e+="}"),(n=a.sourceMap)&&"u">typeof btoa&&(e+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),r.styleTagTransform(e,t,r.options)},remove:function(){var r;null===(r=t).parentNode||r.parentNode.removeChild(r)}}}},113(r){r.exports=function(r,t){if(t.styleSheet)t.styleSheet.cssText=r;else{for(;t.firstChild;)t.removeChild(t.firstChild);t.appendChild(document.createTextNode(r))}}},192(r,t,a){var e=a(72),o=a.n(e),n=a(206),i=a.n(n),d=a(659),s=a.n(d),p=a(56),l=a.n(p),u=a(540),c=a.n(u),j=a(113),f=a.n(j),v=a(475),h={};h.styleTagTransform=f(),h.setAttributes=l(),h.insert=s().bind(null,"head"),h.domAPI=i(),h.insertStyleElement=c(),o()(v.A,h),v.A&&v.A.locals&&v.A.locals;var b=a(33),m={};m.styleTagTransform=f(),m.setAttributes=l(),m.insert=s().bind(null,"head"),m.domAPI=i(),m.insertStyleElement=c(),o()(b.A,m),b.A&&b.A.locals&&b.A.locals}}]);